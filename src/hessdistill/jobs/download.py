"""One dataset file as a job: from its URL (the config's ``source.url``, else :data:`hessdistill.data.sources.SOURCES`)
to its place, checksum-verified (the library is :mod:`hessdistill.data.download`).

    python -m hessdistill.jobs.download SOURCE FILE --out data/FILE [--url URL] [--sha256 HEX | --md5 HEX]

The workflow's ``download_source`` rule calls :func:`snakemake_job`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import HessdistillError
from ..data.download import fetch, plan

__all__ = ["main", "run", "snakemake_job"]


def run(
    source: str, file_name: str, out, *, url: str | None = None, sha256: str | None = None, md5: str | None = None
) -> dict:
    """Download ``file_name`` of ``source`` to ``out``: plan where from and what to check
    (:func:`~hessdistill.data.download.plan`), then fetch and verify (:func:`~hessdistill.data.download.fetch`);
    return the download record."""
    p = plan(source, file_name, url=url, sha256=sha256, md5=md5)
    return fetch(p["url"], out, algorithm=p["algorithm"], digest=p["digest"], archive_member=p["archive_member"])


def snakemake_job(smk, device=None) -> dict:
    """The workflow's ``download_source`` rule: ``smk.params.spec`` (``source``, ``file``, ``url``, ``sha256``,
    ``md5``) into ``smk.output[0]``; return the download record.  ``device`` is not used."""
    spec = smk.params.spec
    return run(spec["source"], spec["file"], smk.output[0], url=spec["url"], sha256=spec["sha256"], md5=spec["md5"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.download", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="source name (a key of hessdistill.data.sources.SOURCES)")
    p.add_argument("file", help="file name of that source")
    p.add_argument("--out", required=True, help="where to put the file")
    p.add_argument("--url", help="download from here instead of the URL in SOURCES")
    p.add_argument("--sha256", help="expected sha256 (hex)")
    p.add_argument("--md5", help="expected md5 (hex)")
    args = p.parse_args(argv)
    try:
        record = run(args.source, args.file, args.out, url=args.url, sha256=args.sha256, md5=args.md5)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
