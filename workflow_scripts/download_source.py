"""rule download_source: one dataset file from its URL (config source.url, else SOURCES), checksum-verified."""

import json
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

from hessdistill.data.download import fetch, plan  # noqa: E402

spec = snakemake.params.spec  # noqa: F821
p = plan(spec["source"], spec["file"], url=spec["url"], sha256=spec["sha256"], md5=spec["md5"])
record = fetch(p["url"], snakemake.output[0], algorithm=p["algorithm"], digest=p["digest"],  # noqa: F821
               archive_member=p["archive_member"])
print(json.dumps(record, indent=1))
