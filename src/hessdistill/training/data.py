"""Training data: structures + reference labels + teacher labels/Hessian rows, and the Hessian-row sampler.

:class:`DistillDataset` serves one split of a structure store as torch-geometric ``Data`` objects (graph
built once per structure with the student's cutoff), joined with the teacher's forces (labels file), node
features (for n2n) and stored Hessian rows (Hessians file), all aligned by structure index and checked by
content hash.

:class:`HessianCollate` turns a list of items into a batch and, for the Hessian term, draws the rows used
this step: per structure ``s`` of its stored rows uniformly without replacement (or, with
``weighting="row_norm"``, with probability proportional to the teacher row's norm; ``"error"``: proportional
to the student's last observed error on that row (rows not yet seen use the teacher row norm as prior; the
trainer feeds errors back with :meth:`HessianCollate.feedback`); or ``"projection"``: ``s`` random probe
vectors v, an unbiased estimate of the squared Frobenius error, needs full Hessians).  Weighted sampling
deliberately biases the objective towards large/hard rows; uniform sampling is the paper's method.  It ships only what the loss needs, as two dense
tensors of shape (s_max, ΣN, 3):

- ``hess_cot``: the cotangents, one per slot k: for row sampling a one-hot at the sampled coordinate of
  *every* structure at once (multi-hot across the batch), so the student needs s VJPs per batch whatever
  its size; for projections the probe vectors themselves;
- ``hess_target``: the teacher's force-Jacobian rows J_T = -H_T restricted to each structure's atoms
  (row sampling) or the teacher's VJP vᵀJ_T (projection);

plus ``hess_weight`` (s_max, ΣN): 1/s_m on the atoms of structure m for its slots k < s_m, 0 elsewhere, and, for
projections only, ``hess_absmax`` (M,): the largest |entry| of each structure's stored Hessian (what the loss's
outlier guard compares with its threshold; for row sampling it reads the sampled rows from ``hess_target``).
Draws come from ``numpy.random.default_rng([seed, epoch, step])``, so a resumed run draws the same rows as
an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

from ..core.errors import HessdistillError, StoreError
from ..core.graphs import atoms_to_data, collate

ROW_WEIGHTINGS = ("uniform", "row_norm", "error", "projection")

log = logging.getLogger(__name__)


class DistillDataset(torch.utils.data.Dataset):
    """One split of a structure store, with optional teacher labels, node features and Hessian rows."""

    def __init__(
        self,
        structures,
        split: str,
        cutoff: float,
        *,
        labels=None,
        hessians=None,
        node_features=False,
        dtype=torch.float64,
        energy_source: str = "reference",
        student=None,
        subset: str | None = None,
    ):
        """``student``: the model the graphs are built for; it checks the elements and precomputes its graph
        extras (e.g. GemNet's triplets) once per structure (hessdistill.core.graphs.atoms_to_data).  ``subset``:
        the name of the subset the store holds, for messages (None: the store is named by its file)."""
        from ..data.labels import HessianStore, LabelStore
        from ..data.store import StructureStore

        self.split = split
        self.structures_path = structures
        with StructureStore(structures) as st:
            if split not in st.splits:
                raise StoreError(
                    f"has no split {split!r} (splits: {', '.join(st.splits)})",
                    path=structures,
                    fix="build the store with this split",
                )
            self.n = st.n_structures(split)
            self.atoms = [st.atoms(split, i) for i in range(self.n)]
            self.content_hash = st.content_hash(split)
            self.has_reference = st.has_labels(split)
        self.teacher_forces = self.teacher_energy = self.node_feats = None
        self.hessians = None
        if labels is not None:
            with LabelStore(labels) as ls:
                self._check_alignment(ls, labels)
                arr = ls.arrays(split)
                off = arr["offsets"]
                self.teacher_energy = arr["energy"]
                self.teacher_forces = [arr["forces"][off[i] : off[i + 1]] for i in range(self.n)]
                if node_features:
                    if "node_features" not in arr:
                        raise StoreError(
                            f"split {split!r} has no teacher node features",
                            path=labels,
                            fix="relabel with --node-features (needed by the n2n baseline)",
                        )
                    self.node_feats = [arr["node_features"][off[i] : off[i + 1]] for i in range(self.n)]
        elif node_features:
            raise HessdistillError("node features requested but no teacher labels file given")
        if energy_source == "teacher":
            if self.teacher_energy is None:
                raise HessdistillError("energy_source 'teacher' needs a teacher labels file")
        elif energy_source != "reference":
            raise HessdistillError(f"energy_source must be 'reference' or 'teacher', got {energy_source!r}")
        elif not self.has_reference:
            raise StoreError(
                f"split {split!r} has no reference energies/forces",
                path=structures,
                fix="label the structures, or train on teacher labels (energy_source: teacher)",
            )
        self.energy_source = energy_source
        self.hessians_path = hessians
        if hessians is not None:
            with HessianStore(hessians) as hs:
                self._check_alignment(hs, hessians)
                self.hessians = [hs.rows(split, i) for i in range(self.n)]
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self.student = student
        self._graphs = [None] * self.n
        #: where the structures come from: one entry per store joined into this dataset (:meth:`joined`)
        self.parts = [
            {"subset": subset, "structures": str(structures), "labels": labels, "hessians": hessians, "n": self.n}
        ]
        #: the fingerprints of the datasets joined into this one (None: a single store)
        self._joined_fingerprints = None

    @classmethod
    def joined(cls, datasets: list[DistillDataset]) -> DistillDataset:
        """One dataset of the structures of ``datasets`` (the same split, cutoff, dtype, target energies and the
        same kinds of teacher data), in this order: index ``i`` of the result is structure ``i`` of the first,
        then the second's follow, and so on.  :meth:`origin` maps an index back to its store; the fingerprint
        covers every part and its name.  A single dataset is returned as it is."""
        datasets = list(datasets)
        first = datasets[0]
        if len(datasets) == 1:
            return first

        def kind(ds):
            return (
                ds.split,
                ds.cutoff,
                ds.dtype,
                ds.energy_source,
                ds.teacher_forces is None,
                ds.node_feats is None,
                ds.hessians is None,
            )

        for ds in datasets[1:]:
            if kind(ds) != kind(first):
                raise HessdistillError(
                    f"cannot join the datasets of {first.parts[0]['structures']} and {ds.parts[0]['structures']}: "
                    "they differ in split, cutoff, dtype, target energies or teacher data (labels, node features, "
                    "Hessian rows)"
                )
        out = cls.__new__(cls)
        out.split, out.cutoff, out.dtype = first.split, first.cutoff, first.dtype
        out.energy_source, out.student = first.energy_source, first.student
        out.structures_path, out.hessians_path = first.structures_path, first.hessians_path
        out.n = sum(ds.n for ds in datasets)
        out.atoms = [a for ds in datasets for a in ds.atoms]
        out.content_hash = hashlib.sha256("|".join(ds.content_hash for ds in datasets).encode()).hexdigest()
        out.has_reference = all(ds.has_reference for ds in datasets)

        def cat(name):
            return None if getattr(first, name) is None else [x for ds in datasets for x in getattr(ds, name)]

        out.teacher_forces, out.node_feats, out.hessians = cat("teacher_forces"), cat("node_feats"), cat("hessians")
        out.teacher_energy = (
            None if first.teacher_energy is None else np.concatenate([ds.teacher_energy for ds in datasets])
        )
        out.parts = [p for ds in datasets for p in ds.parts]
        out._joined_fingerprints = [
            (p.get("subset") or p["structures"], ds.fingerprint()) for ds in datasets for p in ds.parts[:1]
        ]
        out._graphs = [None] * out.n
        return out

    def origin(self, i: int) -> tuple[dict, int]:
        """(the part of :attr:`parts` that structure ``i`` comes from, its index in that store's split)."""
        for part in self.parts:
            if i < part["n"]:
                return part, i
            i -= part["n"]
        raise IndexError(f"structure {i} is beyond the {self.n} structures of this dataset")

    def describe(self, i: int) -> str:
        """'structure 3 of split 'train'' (of subset 'x', when this dataset joins several subsets)."""
        part, k = self.origin(i)
        where = f" of subset {part['subset']!r}" if len(self.parts) > 1 and part["subset"] else ""
        if len(self.parts) > 1 and not part["subset"]:
            where = f" of {part['structures']}"
        return f"structure {k} of split {self.split!r}{where}"

    def structures_per_subset(self) -> dict:
        """{subset name (or store path): number of structures} of the stores this dataset holds, in order."""
        return {p.get("subset") or p["structures"]: p["n"] for p in self.parts}

    def _check_alignment(self, store, path):
        if self.split not in store.splits:
            raise StoreError(f"has no split {self.split!r}", path=path, fix="label this split with the teacher")
        n = store.n_structures(self.split)
        h = store._group(self.split).attrs.get("structure_content_hash")
        if n != self.n or (h is not None and h != self.content_hash):
            raise StoreError(
                f"split {self.split!r} was labelled from different structures than {self.structures_path} "
                f"({n} vs {self.n} structures, content hash {str(h)[:12]} vs {self.content_hash[:12]})",
                path=path,
                fix="relabel the current structure store with the teacher",
            )

    def __len__(self):
        return self.n

    def fingerprint(self) -> str:
        """sha256 (hex) of everything this split feeds a training: the structures and reference labels (the
        store's content hash), which energies/forces are the targets, the teacher's energies, forces and node
        features and the Hessian rows (indices and values) as loaded; for a :meth:`joined` dataset, the name and
        fingerprint of each part in order.  A checkpoint resumes only on data with the same fingerprint."""
        if self._joined_fingerprints is not None:
            h = hashlib.sha256(b"hessdistill.distill-dataset/joined/v1\n")
            for name, fp in self._joined_fingerprints:
                h.update(f"{name}|{fp}\n".encode())
            return h.hexdigest()
        h = hashlib.sha256(b"hessdistill.distill-dataset/v1\n")
        h.update(f"{self.split}|{self.content_hash}|{self.energy_source}\n".encode())

        def add(tag, arrays):
            h.update(f"{tag}|{'none' if arrays is None else len(arrays)}\n".encode())
            for a in arrays if arrays is not None else ():
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.data)

        add("teacher_energy", None if self.teacher_energy is None else [np.asarray(self.teacher_energy)])
        add("teacher_forces", self.teacher_forces)
        add("node_features", self.node_feats)
        add("hessians", None if self.hessians is None else [x for pair in self.hessians for x in pair])
        return h.hexdigest()

    def __getitem__(self, i):
        if self._graphs[i] is None:
            a = self.atoms[i]
            if self.energy_source == "teacher":
                e, f = self.teacher_energy[i], self.teacher_forces[i]
            else:
                e, f = a.get_potential_energy(), a.get_forces()
            d = atoms_to_data(a, self.cutoff, dtype=self.dtype, energy=e, forces=f, student=self.student)
            if self.teacher_forces is not None:
                d.teacher_forces = torch.tensor(self.teacher_forces[i], dtype=self.dtype)
            if self.node_feats is not None:
                d.teacher_features = torch.tensor(self.node_feats[i], dtype=self.dtype)
            d.idx = torch.tensor([i])
            self._graphs[i] = d
        return self._graphs[i]

    def energies_and_numbers(self):
        """(training energies (M,), list of atomic-number arrays): for the per-element reference fit."""
        if self.energy_source == "teacher":
            e = np.asarray(self.teacher_energy)
        else:
            e = np.array([a.get_potential_energy() for a in self.atoms])
        return e, [a.numbers for a in self.atoms]


class HessianCollate:
    """Collate items into a batch and draw this step's Hessian rows (see the module docstring)."""

    def __init__(
        self,
        dataset: DistillDataset,
        *,
        rows_per_structure: int = 4,
        weighting: str = "uniform",
        seed: int = 0,
        probe: str = "gaussian",
    ):
        if weighting not in ROW_WEIGHTINGS:
            raise HessdistillError(f"Hessian row weighting must be one of {ROW_WEIGHTINGS}, got {weighting!r}")
        if rows_per_structure < 1:
            raise HessdistillError(f"rows_per_structure (s) must be >= 1, got {rows_per_structure}")
        if probe not in ("gaussian", "rademacher"):
            raise HessdistillError(f"projection probes must be 'gaussian' or 'rademacher', got {probe!r}")
        self.ds = dataset
        self.s = int(rows_per_structure)
        self.weighting = weighting
        self.seed = int(seed)
        self.probe = probe
        self.epoch = 0
        self.step = 0
        self.last_picks: list = []
        #: per structure, per stored row: last observed student error (only for weighting="error")
        self.row_error: dict[int, np.ndarray] = {}
        if weighting == "projection" and dataset.hessians is not None:
            for i, (idx, rows) in enumerate(dataset.hessians):
                if len(idx) != rows.shape[1]:
                    raise HessdistillError(
                        f"file {str(dataset.origin(i)[0]['hessians'])!r}: random-projection Hessian matching needs "
                        f"full teacher Hessians, but {dataset.describe(i)} has {len(idx)} of {rows.shape[1]} "
                        "rows stored\n  fix: relabel with the teacher's rows: full"
                    )
        elif dataset.hessians is not None:
            self._check_rows()

    def _check_rows(self):
        """s must not exceed the rows stored per structure, except where all 3N rows are stored (full Hessians
        of structures with 3N < s: every row is used, which is the most the structure has)."""
        short = [(i, len(idx), rows.shape[1]) for i, (idx, rows) in enumerate(self.ds.hessians) if len(idx) < self.s]
        partial = [(i, k, full) for i, k, full in short if k < full]
        if partial:
            i, k, full = partial[0]
            raise HessdistillError(
                f"file {str(self.ds.origin(i)[0]['hessians'])!r}: rows_per_structure (s) = {self.s} but "
                f"{self.ds.describe(i)} has only {k} of its {full} Hessian rows stored ({len(partial)} structure(s) "
                "alike)"
                f"\n  fix: lower the run's rows_per_structure to at most {min(k for _, k, _ in partial)}, or relabel "
                "with more rows per structure (the teacher's rows: k or full)"
            )
        if short:
            log.warning(
                "%d structure(s) of split %r have fewer than s = %d coordinates (3N < s): all of their %s "
                "Hessian rows are used",
                len(short),
                self.ds.split,
                self.s,
                "/".join(sorted({str(k) for _, k, _ in short})),
            )

    def set_position(self, epoch: int, step: int):
        self.epoch, self.step = int(epoch), int(step)

    def __call__(self, items):
        batch = collate(items)
        if self.ds.hessians is None:
            return batch
        rng = np.random.default_rng([self.seed, self.epoch, self.step])
        self.step += 1
        self.last_picks = []
        n_total = int(batch.pos.shape[0])
        offsets = batch.ptr.numpy()
        s_max = self.s
        cot = np.zeros((s_max, n_total, 3))
        target = np.zeros((s_max, n_total, 3))
        weight = np.zeros((s_max, n_total))
        absmax = np.zeros(len(items))
        for m, d in enumerate(items):
            idx, rows = self.ds.hessians[int(d.idx)]
            a0, a1 = offsets[m], offsets[m + 1]
            n_m = a1 - a0
            jt = -np.asarray(rows, dtype=np.float64)  # stored H; the loss matches the force Jacobian dF/dx = -H
            if self.weighting == "projection":
                full = np.empty_like(jt)
                full[idx] = jt
                s_m = self.s
                if self.probe == "gaussian":
                    v = rng.standard_normal((s_m, 3 * n_m))
                else:
                    v = rng.choice([-1.0, 1.0], size=(s_m, 3 * n_m))
                cot[:s_m, a0:a1] = v.reshape(s_m, n_m, 3)
                target[:s_m, a0:a1] = (v @ full).reshape(s_m, n_m, 3)
                absmax[m] = np.abs(jt).max() if jt.size else 0.0
            else:
                s_m = min(self.s, len(idx))
                if self.weighting in ("row_norm", "error"):
                    p = np.linalg.norm(jt, axis=1) + 1e-12
                    if self.weighting == "error":
                        p = self.row_error.setdefault(int(d.idx), p.copy()) + 1e-12
                    pick = rng.choice(len(idx), size=s_m, replace=False, p=p / p.sum())
                else:
                    pick = rng.choice(len(idx), size=s_m, replace=False)
                coord = idx[pick]
                cot[np.arange(s_m), a0 + coord // 3, coord % 3] = 1.0
                target[:s_m, a0:a1] = jt[pick].reshape(s_m, n_m, 3)
                self.last_picks.append((int(d.idx), m, pick))
            weight[:s_m, a0:a1] = 1.0 / s_m
        dt = batch.pos.dtype
        batch.hess_cot = torch.as_tensor(cot, dtype=dt)
        batch.hess_target = torch.as_tensor(target, dtype=dt)
        batch.hess_weight = torch.as_tensor(weight, dtype=dt)
        if self.weighting == "projection":
            batch.hess_absmax = torch.as_tensor(absmax, dtype=dt)
        return batch

    def feedback(self, slot_errors: np.ndarray) -> None:
        """Record the student's per-slot errors (s_max, M) of the last batch (weighting="error")."""
        if self.weighting != "error":
            return
        for ds_index, m, pick in self.last_picks:
            table = self.row_error[ds_index]
            table[pick] = slot_errors[: len(pick), m]

    def state_dict(self) -> dict:
        return {"row_error": {k: v.tolist() for k, v in self.row_error.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.row_error = {int(k): np.asarray(v) for k, v in state.get("row_error", {}).items()}
