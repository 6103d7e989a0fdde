"""rule train_run: structures + teacher labels/Hessians -> model.pt, log.csv, summary.json (hessdistill.training)."""

import json
import logging
import sys
from pathlib import Path

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake object)
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

import torch  # noqa: E402

from hessdistill.training import TrainConfig, train  # noqa: E402
from hessdistill.training.loop import _resume_key  # noqa: E402
from dataclasses import asdict  # noqa: E402

cfg = dict(snakemake.params.run)  # noqa: F821
cfg["threads"] = snakemake.threads  # noqa: F821  (a runtime setting: not in params, not in the resume key)
out = Path(snakemake.output.model).parent  # noqa: F821
last = out / "last.pt"
if last.exists():  # a checkpoint of a run with other settings (params changed): start over; same settings: resume
    old = torch.load(last, map_location="cpu", weights_only=False)["config"]
    if _resume_key(old) != _resume_key(asdict(TrainConfig.from_dict(cfg))):
        print(f"removing checkpoints of a run with different settings in {out}")
        for name in ("last.pt", "best.pt"):
            (out / name).unlink(missing_ok=True)
summary = train(cfg, snakemake.input.structures, out, labels=snakemake.input.labels,  # noqa: F821
                hessians=snakemake.input.hessians, progress=False)  # noqa: F821
print(json.dumps(summary, indent=1, sort_keys=True, default=str))
