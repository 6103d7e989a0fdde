"""hessdistill.data.download: checksummed, resumable, atomic downloads (file:// and a local HTTP server)."""

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from hessdistill.core.errors import HessdistillError
from hessdistill.data.download import fetch, plan
from hessdistill.data.sources import ChecksumError

PAYLOAD = b"".join(f"{i} some structure line\n".encode() for i in range(20000))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_file_url_verifies_sha256_and_records_it(tmp_path):
    src = tmp_path / "src.xyz"
    src.write_bytes(PAYLOAD)
    rec = fetch(src.as_uri(), tmp_path / "data" / "x.xyz", algorithm="sha256", digest=SHA)
    assert (tmp_path / "data" / "x.xyz").read_bytes() == PAYLOAD
    assert rec["sha256"] == SHA and rec["verified"] == "sha256"
    assert (tmp_path / "data" / "x.xyz.sha256").read_text().split()[0] == SHA
    assert not list((tmp_path / "data").glob("*.part"))


def test_wrong_checksum_fails_naming_both_digests_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.xyz"
    src.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError, match="does not match the expected 0000") as e:
        fetch(src.as_uri(), tmp_path / "x.xyz", algorithm="sha256", digest="0000")
    assert SHA in str(e.value) and "fix:" in str(e.value)
    assert not (tmp_path / "x.xyz").exists() and not (tmp_path / "x.xyz.part").exists()


def test_unknown_checksum_is_recorded_at_first_download_and_enforced_later(tmp_path):
    src = tmp_path / "src.xyz"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "x.xyz"
    assert fetch(src.as_uri(), dest)["verified"] is None
    dest.unlink()
    src.write_bytes(PAYLOAD + b"changed upstream\n")
    with pytest.raises(ChecksumError, match="delete"):
        fetch(src.as_uri(), dest)
    assert not dest.exists()


def test_archive_member_is_unpacked(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("dir/train.xyz")
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    arc = tmp_path / "train.tar.gz"
    arc.write_bytes(buf.getvalue())
    fetch(arc.as_uri(), tmp_path / "out" / "train.xyz", archive_member="train.xyz")
    assert (tmp_path / "out" / "train.xyz").read_bytes() == PAYLOAD
    with pytest.raises(HessdistillError, match="no member 'other.xyz'"):
        fetch(arc.as_uri(), tmp_path / "out" / "other.xyz", archive_member="other.xyz")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    seen_ranges: list = []

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        type(self).seen_ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_http_download_resumes_a_partial_file_with_a_range_request(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "x.xyz"
        (tmp_path / "x.xyz.part").write_bytes(PAYLOAD[:12345])  # an interrupted earlier download
        url = f"http://127.0.0.1:{server.server_port}/x.xyz"
        fetch(url, dest, algorithm="sha256", digest=SHA)
        assert dest.read_bytes() == PAYLOAD
        assert _RangeHandler.seen_ranges[-1] == "bytes=12345-"
    finally:
        server.shutdown()


def test_plan_uses_published_checksums_and_explains_landing_pages():
    p = plan("mptrj", "MPtrj_2022.9_full.json")
    assert p["url"].startswith("https://figshare.com/") and p["algorithm"] == "md5" and len(p["digest"]) == 32
    assert plan("mptrj", "MPtrj_2022.9_full.json", sha256="AB")["algorithm"] == "sha256"
    with pytest.raises(HessdistillError, match="(?s)landing page .*by hand"):
        plan("mace-off", "train_large_neut_no_bad_clean.xyz")
    with pytest.raises(HessdistillError, match="no download URL known"):
        plan("generic", "mine.xyz")
    assert plan("generic", "mine.xyz", url="https://example.org/mine.xyz")["algorithm"] is None


def test_download_job_run_main_and_snakemake_job(tmp_path, capsys):
    """hessdistill.jobs.download: the workflow rule's job (plan + fetch) as run(), main() and snakemake_job()."""
    from types import SimpleNamespace

    from hessdistill.jobs.download import main, run, snakemake_job

    src = tmp_path / "src.xyz"
    src.write_bytes(PAYLOAD)
    rec = run("generic", "x.xyz", tmp_path / "a" / "x.xyz", url=src.as_uri(), sha256=SHA)
    assert rec["verified"] == "sha256" and (tmp_path / "a" / "x.xyz").read_bytes() == PAYLOAD
    smk = SimpleNamespace(
        params=SimpleNamespace(
            spec={"source": "generic", "file": "x.xyz", "url": src.as_uri(), "sha256": None, "md5": None}
        ),
        output=[str(tmp_path / "b" / "x.xyz")],
    )
    assert snakemake_job(smk)["sha256"] == SHA
    assert (
        main(["generic", "x.xyz", "--out", str(tmp_path / "c" / "x.xyz"), "--url", src.as_uri(), "--sha256", SHA]) == 0
    )
    assert SHA in capsys.readouterr().out
    assert main(["generic", "y.xyz", "--out", str(tmp_path / "d" / "y.xyz")]) == 2
    assert "no download URL known for 'y.xyz'" in capsys.readouterr().err
