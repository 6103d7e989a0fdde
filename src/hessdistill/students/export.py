"""Export a trained student to one self-contained file that computes energies and forces without this code.

The student's energy *and* its forces (the backward pass of a conservative student) are traced together into
one graph of ATen operations (``make_fx`` with symbolic sizes: any number of atoms, pairs and structures), then

- ``aoti`` (files ``*.pt2``): compiled ahead of time by TorchInductor into a shared library with fused C++
  (or CUDA) kernels, loaded with ``torch._inductor.aoti_load_package``.  Needs a C++ compiler at export time
  only; the file runs on the same kind of machine (CPU architecture or GPU, torch version) it was built on.
- ``torchscript`` (other suffixes): the same graph as TorchScript, loaded with ``torch.jit.load``; portable,
  no compiler, but without kernel fusion.

Measured on 2 CPU cores for the default PaiNN (``bench/student_speed.py``) the compiled program is several times
faster than eager PyTorch, TorchScript about as fast as eager; ``aoti`` is therefore the default.

The exported program takes plain tensors: ``pos`` (N, 3), ``z`` (N,), ``edge_index`` (2, E), ``edge_shift``
(E, 3), ``batch`` (N,), ``natoms`` (M,) and, for students whose forward needs precomputed topology (GemNet's
triplets, the edges kept by a PaiNN's ``max_neighbors`` cap), those extras; it returns energies (M,) and forces
(N, 3) in eV and eV/Å.  The file carries a JSON header (``HEADER``): architecture, cutoff, dtype, the extras and
how to compute them, the elements the student accepts, and a digest of the checkpoint it came from.  :mod:`hessdistill.deployed` runs it as an ASE calculator.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_path
from ..core.digest import file_digest
from ..core.errors import HessdistillError
from .base import Student

FORMAT = "hessdistill.exported-student/1"
HEADER = "hessdistill"  # the metadata key (AOTI) or extra file name (TorchScript) of the JSON header
INPUTS = ("pos", "z", "edge_index", "edge_shift", "batch", "natoms")


class GraphInputs:
    """The attributes a student's forward reads from a batch, as plain tensors (no torch-geometric)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def extras_spec(model: Student) -> dict | None:
    """How the runtime computes the student's precomputed extras from a neighbour list (None: it needs none)."""
    if model.arch == "gemnet":
        return {
            "kind": "gemnet",
            "cutoff": model.cutoff,
            "max_neighbors": model.max_neighbors,
            "keys": ["gemnet_edge", "gemnet_swap", "gemnet_trip_in", "gemnet_trip_count"],
            "size_keys": ["gemnet_kmax"],
            # the extras whose length is a new size (swap and counts have the kept edges' length)
            "independent": ["gemnet_edge", "gemnet_trip_in"],
        }
    if model.arch == "painn" and getattr(model, "max_neighbors", None) is not None:
        # the neighbour cap: the kept edges are computed by the runtime (the same function as in training)
        return {
            "kind": "neighbor_cap",
            "cutoff": model.cutoff,
            "max_neighbors": model.max_neighbors,
            "keys": ["painn_edge"],
            "size_keys": [],
            "independent": ["painn_edge"],
        }
    if model.arch in ("painn", "schnet"):
        return None
    raise HessdistillError(
        f"export supports the PaiNN, SchNet and GemNet students, not {model.arch!r}\n"
        "  fix: use the checkpoint with hessdistill.calculator.StudentCalculator instead"
    )


def compute_extras(spec: dict | None, graph) -> tuple[list[torch.Tensor], list[int]]:
    """The extra tensors and sizes of ``spec`` for ``graph`` (an object with the ``INPUTS`` and ``cell``)."""
    if spec is None:
        return [], []
    if spec["kind"] == "gemnet":
        from .gemnet import topology_extras

        ex = topology_extras(graph, spec["cutoff"], spec["max_neighbors"])
        return [ex[k] for k in spec["keys"]], [int(ex[k]) for k in spec["size_keys"]]
    if spec["kind"] == "neighbor_cap":
        from .layers import capped_edges

        return [capped_edges(graph, spec["cutoff"], spec["max_neighbors"], who="PaiNN")[0]], []
    raise HessdistillError(f"unknown extras kind {spec['kind']!r} in an exported student")


def energy_forces_fn(model: Student, spec: dict | None, *, prepared: bool = True):
    """``(pos, z, edge_index, edge_shift, batch, natoms, *extras, cell=None) -> (energy, forces)`` of ``model``.

    ``prepared=False``: the inputs carry no extras and the model computes what it needs in its forward (students
    that cannot be exported, run eagerly).
    """
    keys = [] if spec is None else list(spec["keys"])
    size_keys = [] if spec is None else list(spec["size_keys"])
    tag = model.data_tag if prepared else None

    def energy_forces(pos, z, edge_index, edge_shift, batch, natoms, *extra, cell=None):
        g = GraphInputs(
            pos=pos, z=z, edge_index=edge_index, edge_shift=edge_shift, batch=batch, natoms=natoms, prepared_for=tag
        )
        if cell is not None:
            g.cell = cell
        for key, value in zip(keys, extra[: len(keys)]):
            setattr(g, key, value)
        for key, marker in zip(size_keys, extra[len(keys) :]):
            setattr(g, key, marker.shape[0])  # a size carried by a tensor's length, so it stays symbolic
        energy, forces = model(g, create_graph=False)
        return energy.detach(), forces.detach()

    return energy_forces


def example_inputs(model: Student, spec, *, seed: int = 0, sizes=(7, 4, 6, 5)):
    """Inputs of random structures (periodic and not, alternating) of the given atom counts."""
    from ase import Atoms

    from ..core.graphs import neighbour_list

    rng = np.random.default_rng(seed)
    init = model.hparams.get("embedding_init")
    if init is not None:
        zs = list(init["numbers"])
    elif model.arch == "gemnet":
        zs = list(range(1, min(int(model.hparams["num_elements"]), 9) + 1))
    else:
        zs = list(range(1, min(int(model.hparams.get("num_elements", 9)) - 1, 9) + 1))
    structures = []
    for k, n in enumerate(sizes):
        # points on a jittered grid 1.4 Å apart: no overlaps, several neighbours within any cutoff >= 2 Å
        grid = np.array([(a, b, c) for a in range(3) for b in range(3) for c in range(3)], dtype=float)[:n] * 1.4
        pos = grid + rng.normal(scale=0.1, size=grid.shape)
        if k % 2 == 0:
            cell = np.eye(3) * (4.2 + 0.37) + rng.normal(scale=0.05, size=(3, 3))
            structures.append(Atoms(numbers=rng.choice(zs, n), positions=pos, cell=cell, pbc=True))
        else:
            structures.append(Atoms(numbers=rng.choice(zs, n), positions=pos, pbc=False))
    dtype = next(model.parameters()).dtype
    pos, z, ei, sh, bt, cells = [], [], [], [], [], []
    offset = 0
    for m, a in enumerate(structures):
        # pairs up to cutoff + 1 Å: the runtime passes a skin's worth of extra pairs, which GemNet discards
        i, j, shift = neighbour_list(a, model.cutoff + 1.0)
        pos.append(a.positions)
        z.append(a.numbers)
        ei.append(np.stack([i, j]) + offset)
        sh.append(shift)
        bt.append(np.full(len(a), m))
        cells.append(np.asarray(a.cell.array))
        offset += len(a)
    g = GraphInputs(
        pos=torch.tensor(np.concatenate(pos), dtype=dtype),
        z=torch.tensor(np.concatenate(z)),
        edge_index=torch.tensor(np.concatenate(ei, axis=1)),
        edge_shift=torch.tensor(np.concatenate(sh), dtype=dtype),
        batch=torch.tensor(np.concatenate(bt)),
        natoms=torch.tensor([len(a) for a in structures]),
        cell=torch.tensor(np.stack(cells), dtype=dtype),
    )
    extra, sizes_ = compute_extras(spec, g)
    args = [
        g.pos,
        g.z,
        g.edge_index,
        g.edge_shift,
        g.batch,
        g.natoms,
        *extra,
        *[torch.zeros(s, dtype=torch.int8) for s in sizes_],
    ]
    return args


def _distinct_sizes(args, spec) -> bool:
    """Whether the independent sizes of the example differ pairwise and from the static sizes 2 and 3 (of
    ``edge_index`` and the coordinates), and exceed 1: make_fx gives equal sizes one symbol (a batch of 2
    structures would tie the batch size to the 2 of ``edge_index``, and export would then fix it) and
    specialises sizes 0 and 1."""
    dims = [args[0].shape[0], args[2].shape[1], args[5].shape[0]]
    if spec is not None:
        keys = list(spec["keys"])
        dims += [args[6 + keys.index(k)].shape[0] for k in spec["independent"]]
        dims += [a.shape[0] for a in args[6 + len(keys) :]]
    return len(set(dims)) == len(dims) and min(dims) >= 4


def trace(model: Student):
    """``(graph module, spec, example args)``: energy and forces of ``model`` as one graph with symbolic sizes."""
    from torch.fx.experimental.proxy_tensor import make_fx

    spec = extras_spec(model)
    model = model.eval()
    for seed in range(20):
        for sizes in ((7, 4, 6, 5), (9, 5, 8, 6), (11, 6, 7, 9), (13, 8, 10, 7, 6)):
            args = example_inputs(model, spec, seed=seed, sizes=sizes)
            if _distinct_sizes(args, spec):
                break
        else:
            continue
        break
    else:  # pragma: no cover - some draw always has distinct sizes
        raise HessdistillError("could not draw example structures with distinct sizes for tracing")
    device = next(model.parameters()).device
    args = [a.to(device) for a in args]
    fn = energy_forces_fn(model, spec)
    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*[a.clone() for a in args])
    return gm, spec, args


def _dynamic_shapes(args):
    from torch.export import Dim

    auto = Dim.AUTO
    shapes = [{0: auto}, {0: auto}, {1: auto}, {0: auto}, {0: auto}, {0: auto}]
    shapes += [{0: auto} for _ in args[6:]]
    return tuple(shapes)


def header(model: Student, spec, fmt: str, source: str | None, digest: str | None) -> dict:
    init = model.hparams.get("embedding_init")
    return {
        "format": FORMAT,
        "export_format": fmt,
        "arch": model.arch,
        "cutoff": model.cutoff,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "conservative": model.conservative,
        "extras": spec,
        "elements": None if init is None else list(init["numbers"]),
        "num_elements": model.hparams.get("num_elements"),
        "n_params": int(model.n_params),
        "student_config": {k: v for k, v in model.config().items() if k != "embedding_init"},
        "source": source,
        "source_sha256": digest,
        "torch": torch.__version__,
    }


def export_student(
    model: Student, path, *, fmt: str = "auto", source=None, check: bool = True, device: str = "cpu"
) -> dict:
    """Write ``model`` to ``path`` as an exported student; returns the header written into it.

    ``fmt``: ``aoti``, ``torchscript`` or ``auto`` (``aoti`` for a ``.pt2`` path, else ``torchscript``).  With
    ``check`` the exported program is run on two structures of other sizes than the traced ones and must give
    the eager model's energies and forces to float32 round-off.  ``device``: where the program will run (an AOTI
    package is compiled for one device type).  The file is written atomically.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = "aoti" if path.suffix == ".pt2" else "torchscript"
    if fmt not in ("aoti", "torchscript"):
        raise HessdistillError(f"unknown export format {fmt!r}\n  fix: use aoti (a .pt2 file) or torchscript")
    if fmt == "aoti" and path.suffix != ".pt2":
        raise HessdistillError(
            f"file {str(path)!r}: an AOTInductor package must end in .pt2\n"
            f"  fix: use -o {path.with_suffix('.pt2')} (or --format torchscript)"
        )
    digest = file_digest(source) if source is not None else None
    model = model.to(device)
    gm, spec, args = trace(model)
    meta = header(model, spec, fmt, None if source is None else str(source), digest)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if fmt == "torchscript":
            for node in gm.graph.nodes:  # TorchScript resolves op packets, not their overloads
                if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
                    node.target = node.target.overloadpacket
            gm.recompile()
            scripted = torch.jit.script(gm)
            torch.jit.save(scripted, str(tmp), _extra_files={HEADER: json.dumps(meta)})
        else:
            from torch import _inductor

            program = torch.export.export(gm, tuple(args), dynamic_shapes=_dynamic_shapes(args), strict=False)
            _inductor.aoti_compile_and_package(
                program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": {HEADER: json.dumps(meta)}}
            )
        if check:
            _check_against_eager(model, load_exported(tmp, device=device), spec)
    return meta


def _check_against_eager(model: Student, exported, spec) -> None:
    """Raise if the exported program's energies/forces differ from the eager model's beyond float32 round-off."""
    device = next(model.parameters()).device
    args = [a.to(device) for a in example_inputs(model, spec, seed=101, sizes=(10, 3, 5, 8, 2, 6, 4))]
    energy, forces = exported.raw(*args)
    fn = energy_forces_fn(model, spec)
    e_ref, f_ref = fn(*[a.clone() for a in args])
    scale_f = max(float(f_ref.abs().max()), 1e-3)
    scale_e = max(float(e_ref.abs().max()), 1.0)
    df = float((forces - f_ref).abs().max())
    de = float((energy - e_ref).abs().max())
    if not (df <= 1e-4 * scale_f and de <= 1e-5 * scale_e * max(int(args[0].shape[0]), 1)):
        raise HessdistillError(
            f"the exported student disagrees with the eager one (max |dF| {df:.3g} eV/Å, "
            f"max |dE| {de:.3g} eV): not written\n  fix: report this; use model.pt with "
            "StudentCalculator meanwhile"
        )


def is_exported(path) -> bool:
    """Whether ``path`` looks like an exported student (AOTI package or TorchScript archive with our header)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/data/aotinductor/" in n for n in names) or any(n.endswith(f"extra/{HEADER}") for n in names)


class ExportedStudent:
    """An exported student loaded for use: ``raw(*inputs) -> (energy (M,), forces (N, 3))`` and its header."""

    def __init__(self, program, meta: dict, path):
        self.program = program
        self.meta = meta
        self.path = str(path)
        self.cutoff = float(meta["cutoff"])
        self.spec = meta.get("extras")
        self.dtype = getattr(torch, meta.get("dtype", "float32"))
        self.arch = meta["arch"]
        self.n_params = int(meta.get("n_params", 0))

    def raw(self, *inputs):
        # AOTI: the loader's flat entry point (the package's __call__ re-parses its call spec and flattens the
        # inputs with pytree on every call: ~50 µs, a tenth of a small structure's step); inputs are flat tensors
        loader = getattr(self.program, "loader", None)
        with torch.no_grad():
            out = loader.boxed_run(list(inputs)) if loader is not None else self.program(*inputs)
        return out[0], out[1]

    def check_numbers(self, numbers) -> None:
        """Raise naming the elements of ``numbers`` the exported student cannot embed."""
        from .base import element_names

        z = np.asarray(numbers, dtype=np.int64).reshape(-1)
        if self.meta.get("elements") is not None:
            bad = z[~np.isin(z, self.meta["elements"])]
        elif self.arch == "gemnet":
            bad = z[(z < 1) | (z > int(self.meta["num_elements"]))]
        else:
            bad = z[(z < 0) | (z >= int(self.meta["num_elements"]))]
        if bad.size:
            raise HessdistillError(
                f"file {self.path!r}: the exported {self.arch} student cannot embed element(s) "
                f"{element_names(bad)}\n  fix: use a student trained on these elements"
            )


def load_exported(path, device: str = "cpu") -> ExportedStudent:
    """Load a file written by :func:`export_student` (either format) on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise HessdistillError(
            f"file {str(path)!r}: no such exported student\n  fix: write one with "
            "`hessdistill export <run>/model.pt -o student.pt2`"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise HessdistillError(
            f"file {str(path)!r} is not an exported student ({exc})\n  fix: write one with "
            "`hessdistill export <run>/model.pt -o student.pt2`"
        ) from exc
    if any("/data/aotinductor/" in n for n in names):
        from torch import _inductor

        if torch.device(device).type == "cuda":
            program = _inductor.aoti_load_package(str(path), device_index=torch.device(device).index or 0)
        else:
            program = _inductor.aoti_load_package(str(path))
        raw = program.get_metadata().get(HEADER)
    else:
        extra = {HEADER: ""}
        try:
            program = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as exc:
            raise HessdistillError(
                f"file {str(path)!r} is not an exported student ({exc})\n  fix: write one "
                "with `hessdistill export <run>/model.pt -o student.pt2`"
            ) from exc
        raw = extra[HEADER]
    try:
        meta = json.loads(raw)
        assert meta["format"] == FORMAT
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise HessdistillError(
            f"file {str(path)!r} is a torch program without a hessdistill header: not an "
            "exported student\n  fix: write one with `hessdistill export <run>/model.pt`"
        ) from exc
    return ExportedStudent(program, meta, path)
