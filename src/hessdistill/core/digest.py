"""The one file digest of hessdistill: dataset checksums, downloads, teacher model files and exported students."""

from __future__ import annotations

import hashlib

__all__ = ["file_digest"]


def file_digest(path, algorithm: str = "sha256", *, chunk: int = 1 << 20) -> str:
    """Hex digest of the file ``path``, read ``chunk`` bytes at a time (files larger than memory work).

    ``algorithm`` is any name :func:`hashlib.new` knows (md5, sha1, sha256, sha512, ...); an unknown one raises
    ``ValueError``.  A missing or unreadable file raises ``OSError`` (callers that own the path check it first).
    """
    try:
        h = hashlib.new(algorithm)
    except (ValueError, TypeError):
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (use one of md5, sha1, sha256, sha512)") from None
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
