"""rule download_source: one dataset file from its URL (config source.url, else SOURCES), checksum-verified."""

import json
import logging
import sys
from pathlib import Path

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake object)
try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

from hessdistill.data.download import fetch, plan  # noqa: E402

spec = snakemake.params.spec  # noqa: F821
p = plan(spec["source"], spec["file"], url=spec["url"], sha256=spec["sha256"], md5=spec["md5"])
record = fetch(p["url"], snakemake.output[0], algorithm=p["algorithm"], digest=p["digest"],  # noqa: F821
               archive_member=p["archive_member"])
print(json.dumps(record, indent=1))
