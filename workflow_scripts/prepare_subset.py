"""rule prepare_subset: one subset spec -> results/{subset}/data/structures.h5 (hessdistill.data.prepare)."""

import json
import logging
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake object)
try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

import torch  # noqa: E402

from hessdistill.data.prepare import prepare_subset  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
report = prepare_subset(snakemake.params.spec, snakemake.output[0], base_dir=snakemake.config.get("data_dir", "."))  # noqa: F821
print(json.dumps(report, indent=1, sort_keys=True, default=str))
