"""Print the parameter counts of the students' default (paper "small") configurations.

    python -m hessdistill.students
"""

from . import build_student

CONFIGS = {
    "PaiNN small, conservative": {"arch": "painn"},
    "PaiNN small, direct forces": {"arch": "painn", "direct_forces": True},
    "GemNet-dT small (direct)": {"arch": "gemnet", "direct_forces": True},
    "GemNet-T small (conservative)": {"arch": "gemnet", "direct_forces": False},
    "SchNet": {"arch": "schnet"},
}

if __name__ == "__main__":
    for name, cfg in CONFIGS.items():
        m = build_student(cfg)
        total = sum(p.numel() for p in m.parameters())
        print(f"{name:32} trainable {m.n_params:>9,}  all {total:>9,}  cutoff {m.cutoff:g} Å")
