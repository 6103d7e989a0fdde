"""Downloading dataset files with checksums (the workflow's ``download_source`` rule).

``fetch(url, dest, ...)`` streams ``url`` (http(s), ftp or file://) into ``dest.part``, resuming a partial
download with an HTTP Range request, verifies the checksum and renames into place; a ``.tar.gz``/``.zip``
archive can be unpacked to one member.  Checksums, in order of precedence:

1. the one given (config ``sha256``/``md5``),
2. the published one in :data:`hessdistill.data.sources.SOURCES`,
3. none known: the sha256 of the first download is recorded next to the file (``<dest>.sha256``) and later
   downloads of the same file must match it.

A mismatch raises :class:`~hessdistill.data.sources.ChecksumError` naming the file, both digests and the fix,
and leaves no file at ``dest``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..core.atomic import atomic_path, atomic_write_text
from ..core.digest import file_digest
from ..core.errors import HessdistillError
from .sources import SOURCES, ChecksumError

log = logging.getLogger("hessdistill.download")
CHUNK = 1 << 20


def source_file_entry(source: str, file_name: str) -> dict | None:
    """The :data:`SOURCES` entry of ``file_name`` (matched by name or archive name) of ``source``."""
    for entry in SOURCES.get(source, {}).get("files", []):
        if file_name in (entry["name"], entry.get("archive")):
            return entry
    return None


def plan(
    source: str, file_name: str, url: str | None = None, sha256: str | None = None, md5: str | None = None
) -> dict:
    """Where to get ``file_name`` and what to check: {url, algorithm, digest, archive_member}.

    Raises a clear error when there is no direct URL (a landing page only: the file has to be fetched by hand).
    """
    entry = source_file_entry(source, file_name)
    if url is None:
        if entry is None or not entry.get("urls"):
            raise HessdistillError(
                f"no download URL known for {file_name!r} of source {source!r}\n"
                f"  fix: put the file at the configured path, or give source.url (and sha256) in the config"
            )
        if entry.get("url_is_landing_page"):
            raise HessdistillError(
                f"{file_name!r} of source {source!r} is published only through the landing page "
                f"{entry['urls'][0]} (no direct link)\n  fix: download "
                f"{entry.get('archive') or file_name} there by hand, unpack it and put {entry['name']} at the "
                f"configured path; the workflow then skips the download"
            )
        url = entry["urls"][0]
    algorithm, digest = None, None
    if sha256:
        algorithm, digest = "sha256", sha256.lower()
    elif md5:
        algorithm, digest = "md5", md5.lower()
    elif entry is not None:
        for algo in ("sha256", "md5"):
            if entry.get(algo):
                algorithm, digest = algo, entry[algo].lower()
                break
    member = (
        entry["name"]
        if entry is not None and entry.get("archive") and url.endswith((".tar.gz", ".tgz", ".zip"))
        else None
    )
    return {"url": url, "algorithm": algorithm, "digest": digest, "archive_member": member}


def _stream(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range request when ``part`` already holds a prefix)."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "hessdistill"})
    if have and url.startswith(("http://", "https://")):
        req.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = getattr(resp, "status", 200)
            mode = "ab" if have and status == 206 else "wb"  # server ignored the Range: start over
            with open(part, mode) as out:
                shutil.copyfileobj(resp, out, CHUNK)
    except (urllib.error.URLError, OSError) as exc:
        raise HessdistillError(
            f"downloading {url} failed: {exc}\n  fix: check the network (compute nodes are often "
            f"offline: run the download rule on a login node with --until download_source), "
            f"or put the file in place by hand; the partial file {part} is kept and resumed"
        ) from exc


def fetch(
    url: str,
    dest,
    *,
    algorithm: str | None = None,
    digest: str | None = None,
    archive_member: str | None = None,
    timeout: float = 60.0,
) -> dict:
    """Download ``url`` to ``dest`` (atomic), verify, optionally unpack ``archive_member``. Returns a record."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _stream(url, part, timeout)
    record_path = dest.with_name(dest.name + ".sha256")
    if algorithm is None and record_path.exists():  # verify against the digest recorded at the first download
        algorithm, digest = "sha256", record_path.read_text().split()[0]
    if algorithm is not None:
        got = file_digest(part, algorithm)
        if got != digest:
            part.unlink()
            raise ChecksumError(
                f"{url}: {algorithm} {got} does not match the expected {digest}\n  fix: download "
                f"again (the partial file was removed); if the publisher changed the file, update "
                f"the checksum in the config (sha256:/md5:) or delete {record_path}"
            )
    sha = file_digest(part, "sha256")
    if archive_member is not None:
        _unpack(part, archive_member, dest)
        part.unlink()
    else:
        os.replace(part, dest)
    if not record_path.exists():
        atomic_write_text(record_path, f"{sha}  {url}\n")
    log.info("downloaded %s -> %s (sha256 %s%s)", url, dest, sha, f", {algorithm} verified" if algorithm else "")
    return {"url": url, "path": str(dest), "sha256": sha, "verified": algorithm, "archive_member": archive_member}


def _unpack(archive: Path, member: str, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if Path(n).name == member]
                if not names:
                    raise HessdistillError(f"{archive}: no member {member!r} (has {zf.namelist()[:5]} ...)")
                with zf.open(names[0]) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
        else:
            with tarfile.open(archive) as tf:
                names = [m for m in tf.getmembers() if m.isfile() and Path(m.name).name == member]
                if not names:
                    raise HessdistillError(f"{archive}: no member {member!r}")
                with tf.extractfile(names[0]) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
