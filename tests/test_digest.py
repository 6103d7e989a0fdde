"""The file digest helper (hessdistill.core.digest)."""

import hashlib

import pytest

from hessdistill.core.digest import file_digest


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_file_digest_matches_hashlib_for_any_chunk(tmp_path, chunk):
    data = bytes(range(256)) * 41
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_digest(path, chunk=chunk) == hashlib.sha256(data).hexdigest()
    assert file_digest(str(path), "md5", chunk=chunk) == hashlib.md5(data).hexdigest()


def test_file_digest_empty_file_and_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_digest(empty) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(ValueError, match="unknown checksum algorithm 'nope'"):
        file_digest(empty, "nope")
    with pytest.raises(OSError):
        file_digest(tmp_path / "missing")
