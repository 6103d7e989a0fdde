"""Train one student run.

    python -m hessdistill.jobs.train RUN.yaml --structures S.h5 [--labels L.h5] [--hessians H.h5] --out DIR

``RUN.yaml`` holds the options of :class:`hessdistill.training.TrainConfig` (student, method, weights,
rows_per_structure, batch_size, lr, max_epochs, max_time_s, seed, device, dtype, ...).  Rerunning the same
command after a kill resumes from ``DIR/last.pt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..core.errors import HessdistillError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="run configuration (YAML or JSON)")
    p.add_argument("--structures", required=True)
    p.add_argument("--labels")
    p.add_argument("--hessians")
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .prepare import load_spec
    from ..training import train

    try:
        cfg = load_spec(args.config)
        summary = train(cfg, args.structures, args.out, labels=args.labels, hessians=args.hessians,
                        progress=not args.no_progress)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("epochs", "best_val_force_mae_meV_A", "n_params", "train_time_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
