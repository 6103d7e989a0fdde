"""One command that proves the GPU paths: ``make gpu-check`` (or ``python bench/gpu_check.py``).

Steps, each reported PASS or FAIL with its time and what it measured:

1. ``environment``: torch and CUDA versions, the GPU, float32 matmul precision (pinned to "highest": no TF32).
2. ``labels``: the built-in perovskites (CHGNet MD, 12 small cells) labelled with energies, forces and Hessian
   rows by CHGNet on the device; the labels file records the device and GPU name.
3. ``train-painn`` / ``train-gemnet-dT``: Hessian-distillation training (s = 2) of a small PaiNN and a small
   GemNet-dT on the device; finite losses, model.pt written, summary records the device.
4. ``resume-cuda``: the PaiNN run extended from 2 to 4 epochs resumes at epoch 2 on the device.
5. ``resume-on-cpu``: the device's checkpoint resumed on the CPU (a GPU checkpoint on a CPU node).
6. ``forces-cuda-vs-cpu``: the device-trained model gives the same forces on the device and on the CPU
   (float32 round-off: max |ΔF| < 1e-4 eV/Å).
7. ``deterministic``: two deterministic-mode trainings on the device give identical weights.
8. ``speed``: student vs teacher on the device, both in float32, latency and throughput ratios.
9. ``export``: the trained PaiNN compiled for the device (AOTInductor), its forces equal to the eager model's on
   64 structures in one batched call, and 55 steps of batched Langevin MD of those 64 structures on it.
10. ``workflow``: the ci-tiny workflow with ``use_gpu: true`` and ``gpu_device: cuda`` (skip with
   ``--no-workflow``); every device job records the GPU.

Exit status 0 when every step passed.  ``--device cpu`` runs the same steps on the CPU (what the test suite
does, with ``--no-workflow``, to keep this script itself correct on machines without a GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

PAINN = {"arch": "painn", "hidden": 32, "num_layers": 2, "num_rbf": 16, "cutoff": 5.0}
GEMNET = {
    "arch": "gemnet",
    "direct_forces": True,
    "emb_size_atom": 32,
    "emb_size_edge": 32,
    "num_blocks": 2,
    "cutoff": 5.0,
}


class Check:
    def __init__(self):
        self.rows = []

    def step(self, name, fn):
        t0 = time.perf_counter()
        try:
            detail = fn() or ""
            ok = True
        except Exception as exc:  # noqa: BLE001 (every failure is reported, then the next step runs)
            detail = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            ok = False
        dt = time.perf_counter() - t0
        self.rows.append((name, ok, dt, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name:<20s} {dt:7.1f} s  {detail}", flush=True)
        return ok

    def summary(self) -> int:
        n_ok = sum(ok for _, ok, _, _ in self.rows)
        print(f"\ngpu-check: {n_ok} passed, {len(self.rows) - n_ok} failed", flush=True)
        return 0 if n_ok == len(self.rows) else 1


def run_cfg(student, device, **kw):
    cfg = dict(
        student=dict(student),
        method="hessian",
        rows_per_structure=2,
        batch_size=4,
        max_epochs=2,
        lr=1e-3,
        ema_decay=0.9,
        device=device,
        seed=0,
        hessian_schedule_force_mae=None,
    )
    cfg.update(kw)
    return cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="device to check (default cuda)")
    p.add_argument("--out", help="work directory (default: a temporary one, removed at the end)")
    p.add_argument("--no-workflow", action="store_true", help="skip the ci-tiny workflow step")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    dev = args.device
    chk = Check()

    from hessdistill.core.devices import device_record, resolve_device

    def environment():
        rec = device_record(resolve_device(dev))
        return json.dumps(rec, sort_keys=True)

    if not chk.step("environment", environment):
        return chk.summary()

    st, lab, hes = work / "structures.h5", work / "labels.h5", work / "hessians.h5"

    def labels():
        from hessdistill.data.builtin import GeneratorSettings
        from hessdistill.data.labels import LabelStore
        from hessdistill.jobs.generate import run as build_store
        from hessdistill.jobs.label import run_labelling
        from hessdistill.teachers import load_teacher

        teacher = load_teacher("chgnet", device=dev, dtype="float32")
        teacher.vjp_method = "batched"  # no per-size probing: this checks paths, it does not tune them
        # on a GPU two cell sizes; on the CPU (the test suite) the 5-atom cell only, to stay quick
        cells = ((1, 1, 1), (2, 1, 1)) if dev.startswith("cuda") else ((1, 1, 1),)
        settings = GeneratorSettings(
            compositions=("SrTiO3",),
            supercells=cells,
            n_trajectories=3,
            frames_per_trajectory=3,
            n_rattle_series=1,
            equilibration_steps=2,
            sample_every=1,
        )
        build_store(st, teacher, settings, fractions={"train": 0.5, "val": 0.25, "test": 0.25}, split_seed=0)
        run_labelling(
            st, teacher, lab, hessians_out=hes, hessian_splits=["train", "test"], rows_per_structure=6, progress=False
        )
        with LabelStore(lab) as ls:
            rec = ls.attrs.get("device")
        if rec is None or (dev.startswith("cuda") and "cuda" not in str(rec)):
            raise AssertionError(f"labels do not record the device used (attrs device = {rec!r})")
        return f"recorded device {rec}"

    chk.step("labels", labels)

    def train_step(name, student, **kw):
        from hessdistill.training import train

        out = work / name
        s = train(run_cfg(student, dev, **kw), st, out, labels=lab, hessians=hes, progress=False)
        if not np.isfinite(s["best_val_force_mae_meV_A"]):
            raise AssertionError(f"non-finite validation error {s['best_val_force_mae_meV_A']}")
        if not str(s.get("device", "")).startswith(dev.split(":")[0]):
            raise AssertionError(f"summary records device {s.get('device')!r}, expected {dev}")
        return (
            f"{s['epochs']} epochs, val F MAE {s['best_val_force_mae_meV_A']:.1f} meV/Å, "
            f"{s['train_time_s']:.1f} s, device {s['device']} {s.get('gpu_name') or ''}"
        )

    chk.step("train-painn", lambda: train_step("painn", PAINN))
    chk.step("train-gemnet-dT", lambda: train_step("gemnet", GEMNET))

    def resume_device():
        from hessdistill.training import train

        out = work / "painn"
        s = train(run_cfg(PAINN, dev, max_epochs=4), st, out, labels=lab, hessians=hes, progress=False)
        if s["epochs"] != 4 or s.get("resumed_from_epoch") != 2:
            raise AssertionError(
                f"expected a resume at epoch 2 to 4 epochs, got {s.get('resumed_from_epoch')} -> {s['epochs']}"
            )
        return "resumed at epoch 2, finished 4"

    chk.step("resume-" + dev.split(":")[0], resume_device)

    def resume_on_cpu():
        from hessdistill.training import train

        src, out = work / "painn", work / "painn-cpu"
        shutil.copytree(src, out, dirs_exist_ok=True)
        s = train(run_cfg(PAINN, "cpu", max_epochs=5), st, out, labels=lab, hessians=hes, progress=False)
        if s["epochs"] != 5 or s.get("resumed_from_epoch") != 4:
            raise AssertionError(f"expected a resume at epoch 4 on the CPU, got {s.get('resumed_from_epoch')}")
        return "checkpoint of the device resumed on the CPU at epoch 4"

    chk.step("resume-on-cpu", resume_on_cpu)

    def forces_agree():
        from hessdistill.data.store import StructureStore
        from hessdistill.students.calculator import StudentCalculator

        with StructureStore(st) as s:
            atoms = [s.atoms("test", i) for i in range(s.n_structures("test"))]
        worst = 0.0
        for model_dir in ("painn", "gemnet"):
            on_dev = StudentCalculator.from_checkpoint(work / model_dir / "model.pt", device=dev)
            on_cpu = StudentCalculator.from_checkpoint(work / model_dir / "model.pt", device="cpu")
            for a in atoms:
                fd = on_dev.get_forces(a.copy())
                fc = on_cpu.get_forces(a.copy())
                worst = max(worst, float(np.abs(fd - fc).max()))
        if worst > 1e-4:
            raise AssertionError(f"max |F_device - F_cpu| = {worst:.2e} eV/Å > 1e-4")
        return f"max |F_device - F_cpu| = {worst:.1e} eV/Å over {len(atoms)} test structures x 2 students"

    chk.step("forces-" + dev.split(":")[0] + "-vs-cpu", forces_agree)

    def deterministic():
        from hessdistill.training import train

        states = []
        for k in range(2):
            out = work / f"det{k}"
            train(run_cfg(PAINN, dev, deterministic=True), st, out, labels=lab, hessians=hes, progress=False)
            states.append(torch.load(out / "model.pt", map_location="cpu", weights_only=False)["state_dict"])
        diff = max(float((states[0][k].double() - states[1][k].double()).abs().max()) for k in states[0])
        if diff != 0.0:
            raise AssertionError(f"deterministic runs differ by up to {diff:.2e}")
        return "two deterministic trainings: identical weights"

    chk.step("deterministic", deterministic)

    def speed():
        from hessdistill.data.store import StructureStore
        from hessdistill.evaluation.speed import speed_comparison
        from hessdistill.students.checkpoint import load_student
        from hessdistill.teachers import load_teacher

        model, _ = load_student(work / "painn" / "model.pt", device=dev)
        teacher = load_teacher("chgnet", device=dev, dtype="float32")
        with StructureStore(st) as s:
            pool = [s.atoms(sp, i) for sp in ("train", "test") for i in range(s.n_structures(sp))]
        res = speed_comparison(model, teacher, pool, batch_size=8, repeats=5, warmup=2, device=dev)
        return (
            f"latency {res['student']['latency_ms']:.1f} vs {res['teacher']['latency_ms']:.1f} ms "
            f"({res['speedup_latency']:.1f}x), throughput {res['speedup_throughput']:.1f}x, both float32"
        )

    chk.step("speed", speed)

    def export():
        """The student compiled for this device (AOTInductor), equal to the eager model, and batched MD on it."""
        from hessdistill.data.store import StructureStore
        from hessdistill.evaluation.batched_md import BatchedMD
        from hessdistill.students.checkpoint import load_student
        from hessdistill.students.deployed import EagerProgram, Runner
        from hessdistill.students.export import export_student, load_exported

        model, _ = load_student(work / "painn" / "model.pt", device=dev)
        t0 = time.perf_counter()
        export_student(model, work / "student.pt2", device=dev)
        t_export = time.perf_counter() - t0
        exported = load_exported(work / "student.pt2", device=dev)
        with StructureStore(st) as s:
            pool = [s.atoms("test", i) for i in range(s.n_structures("test"))]
        structs = (pool * (1 + 64 // len(pool)))[:64]
        args = ([a.numbers for a in structs], [a.cell.array for a in structs], [a.pbc for a in structs])
        e1, f1 = Runner(exported, *args, device=dev)([a.positions for a in structs])
        e0, f0 = Runner(EagerProgram(model), *args, device=dev)([a.positions for a in structs])
        df = float(np.abs(f1 - f0).max())
        if df > 1e-4 * max(float(np.abs(f0).max()), 1e-2):
            raise AssertionError(f"exported forces differ from eager by {df:.2e} eV/Å")
        md = BatchedMD.from_atoms(
            exported, structs, device=dev, timestep_fs=1.0, temperature_K=300, friction_per_fs=0.01, seed=0
        )
        md.run(5)
        t0 = time.perf_counter()
        md.run(50)
        rate = 50 * len(structs) / (time.perf_counter() - t0)
        return (
            f"exported in {t_export:.0f} s, max |dF| {df:.1e} eV/Å vs eager; batched MD of {len(structs)} "
            f"structures: {rate:.0f} structure-steps/s, {int(md.stable.sum())} stable"
        )

    chk.step("export", export)

    if not args.no_workflow:

        def workflow():
            wdir = work / "workflow"
            wdir.mkdir(exist_ok=True)
            exe = Path(sys.executable).parent / "snakemake"
            cmd = [
                str(exe if exe.exists() else "snakemake"),
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--directory",
                str(wdir),
                "--configfile",
                str(ROOT / "configs" / "ci-tiny.yaml"),
                "-c",
                "4",
                "--config",
                "use_gpu=true",
                f"gpu_device={'cuda' if dev.startswith('cuda') else 'auto'}",
                "--show-failed-logs",
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if res.returncode != 0:
                raise AssertionError((res.stdout + res.stderr)[-3000:])
            summ = json.loads((wdir / "results/tiny-sto/runs/chgnet/tiny-hessian/summary.json").read_text())
            speed_json = json.loads((wdir / "results/tiny-sto/runs/chgnet/tiny-hessian/eval/speed.json").read_text())
            return (
                f"ci-tiny done; training on {summ.get('device')} {summ.get('gpu_name') or ''}; speed on "
                f"{speed_json.get('device')}, {speed_json.get('speedup_latency', float('nan')):.1f}x latency"
            )

        chk.step("workflow", workflow)

    code = chk.summary()
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
