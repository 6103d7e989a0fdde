"""Print the parameter counts of the students' default (paper "small") configurations.

python -m hessdistill.students
"""

from . import build_student

CONFIGS = {
    "PaiNN small, conservative": {"arch": "painn"},
    "PaiNN small, direct forces": {"arch": "painn", "direct_forces": True},
    "GemNet-dT small (direct)": {"arch": "gemnet", "direct_forces": True},
    # MPtrj release config: 100 elements, cutoff 6 Å (the authors' note: 674,006 parameters vs 672,918 with 83)
    "GemNet-dT small, 100 el. (MPtrj)": {"arch": "gemnet", "direct_forces": True, "num_elements": 100, "cutoff": 6.0},
    "GemNet-T small (conservative)": {"arch": "gemnet", "direct_forces": False},
    "SchNet": {"arch": "schnet"},
}

if __name__ == "__main__":
    for name, cfg in CONFIGS.items():
        m = build_student(cfg)
        total = sum(p.numel() for p in m.parameters())
        print(f"{name:32} trainable {m.n_params:>9,}  all {total:>9,}  cutoff {m.cutoff:g} Å")
