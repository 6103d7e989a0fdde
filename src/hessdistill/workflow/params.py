"""Pure helpers of the Snakemake workflow (rules/common.smk imports them; tested here without Snakemake).

* :func:`canon` (:func:`hessdistill.core.jsonutil.canon`, numpy-free): a canonical, plain copy of a config value,
  so that Snakemake's params-based rerun trigger (which compares ``repr``) reruns exactly when a setting changes
  and never because of key order or types.
* :func:`run_config`: the TrainConfig options of one run on one subset (the run's options with its
  ``subset_overrides`` for that subset on top; workflow-only keys removed).
* :func:`combos`: the (subset, teacher, run) matrix, honouring a run's ``subsets`` restriction; subsets used only
  as extra training data (:func:`extra_only_subsets`) are not in it.
* :func:`extra_train_subsets`: the subsets whose train split a run adds to its training set.
* :func:`evaluation_protocol`: one evaluation's protocol overrides for one subset.
* :func:`disagreement_partners`: the partner runs the disagreement evaluation of a run compares it with.
* :func:`job_device`: the device a job runs on (what its GPU request follows; not a param: moving a job
  between CPU and GPU reruns nothing but the speed evaluation, whose numbers are the device's).
"""

from __future__ import annotations

from ..core.jsonutil import canon  # noqa: F401  (numpy-free: the one canonical form, re-exported for the rules)

#: keys of a run that configure the workflow, not the training (never passed to TrainConfig)
RUN_WORKFLOW_KEYS = ("subset_overrides", "subsets", "paper_table")


def run_config(config: dict, subset: str, run: str) -> dict:
    """TrainConfig options of ``run`` trained on ``subset``. A dict-valued override (e.g. ``weights``) is merged
    into the run's dict; any other value replaces it."""
    spec = config["runs"][run]
    cfg = {k: v for k, v in spec.items() if k not in RUN_WORKFLOW_KEYS}
    for k, v in (spec.get("subset_overrides") or {}).get(subset, {}).items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


def extra_train_subsets(config: dict, subset: str, run: str) -> list[str]:
    """The subsets whose train split ``run`` trained on ``subset`` adds to its training set (its
    ``extra_train_subsets``, or that of its ``subset_overrides`` entry for ``subset``), in order."""
    return list(run_config(config, subset, run).get("extra_train_subsets") or [])


def extra_only_subsets(config: dict) -> set[str]:
    """Subsets that some run names in ``extra_train_subsets`` (its own or a ``subset_overrides`` entry's) and no
    run names in ``subsets``: extra training data only (e.g. frames flagged by an evaluation, all in ``train``),
    so no run is trained on them and no teacher is evaluated on them; they are prepared and labelled when a run
    that uses them is trained."""
    used, named = set(), set()
    for spec in config["runs"].values():
        used |= set(spec.get("extra_train_subsets") or [])
        for override in (spec.get("subset_overrides") or {}).values():
            if isinstance(override, dict):
                used |= set(override.get("extra_train_subsets") or [])
        named |= set(spec.get("subsets") or [])
    return used - named


def matrix_subsets(config: dict) -> list[str]:
    """The subsets runs are trained and teachers evaluated on: all but :func:`extra_only_subsets`."""
    extra = extra_only_subsets(config)
    return [s for s in config["subsets"] if s not in extra]


def combos(config: dict) -> list[tuple[str, str, str]]:
    """Every (subset, teacher, run) over :func:`matrix_subsets`; a run with ``subsets: [...]`` is trained only on
    those."""
    subsets = matrix_subsets(config)
    return [
        (s, t, r)
        for s in config["subsets"]
        for t in config["teachers"]
        for r, spec in config["runs"].items()
        if s in spec.get("subsets", subsets)
    ]


def evaluation_protocol(config: dict, subset: str, evaluation: str) -> dict:
    """``evaluation.protocol[evaluation]`` with ``evaluation.subset_protocol[subset][evaluation]`` on top."""
    ev = config.get("evaluation", {})
    return {
        **ev.get("protocol", {}).get(evaluation, {}),
        **ev.get("subset_protocol", {}).get(subset, {}).get(evaluation, {}),
    }


def disagreement_partners(config: dict, subset: str, teacher: str, run: str) -> list[str]:
    """The partner runs of ``run``'s disagreement evaluation on ``subset`` with ``teacher``: its protocol's
    ``partners`` (``evaluation.protocol.disagreement.partners``, a subset's ``subset_protocol`` on top): ``auto``
    (the default) every other run of the matrix with this subset and teacher, in config order; a list, its names
    without ``run`` itself (each once).  Not checked here: :mod:`hessdistill.workflow.config_check` does that."""
    spec = evaluation_protocol(config, subset, "disagreement").get("partners", "auto")
    if spec == "auto":
        return [r for s, t, r in combos(config) if s == subset and t == teacher and r != run]
    return [r for r in dict.fromkeys(spec) if r != run]


#: job kinds that may run on a GPU (labels, training, MD, disagreement and speed evaluations)
GPU_KINDS = ("label", "train", "md", "disagreement", "speed")


def _cpu_only_teacher(config: dict, teacher: str | None) -> bool:
    """ASE-calculator teachers (finite differences through any ASE calculator) run on the CPU."""
    return teacher is not None and str(config["teachers"][teacher]["model"]).startswith("ase:")


def job_device(config: dict, kind: str, *, subset=None, teacher=None, run=None) -> str:
    """'cpu', 'cuda', 'cuda:N' or 'auto' for a job of ``kind`` (label, train, md, speed, test, vibrations,
    relax) on these wildcards.

    A training run's own ``device`` (cpu, cuda, cuda:N) wins; otherwise GPU kinds run on ``gpu_device`` when
    ``use_gpu`` is set, and everything else on the CPU.  Jobs that time or label with an ASE-calculator teacher
    stay on the CPU, since that teacher cannot use a GPU."""
    if kind == "train" and run is not None:
        own = run_config(config, subset, run).get("device")
        if own not in (None, "auto"):
            return str(own)
    if kind not in GPU_KINDS or not config.get("use_gpu"):
        return "cpu"
    if kind in ("label", "speed") and _cpu_only_teacher(config, teacher):
        return "cpu"
    return str(config.get("gpu_device", "cuda"))
