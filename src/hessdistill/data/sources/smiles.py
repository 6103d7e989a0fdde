"""Total charge of a molecule from the formal charges written in its SMILES (no RDKit needed)."""

from __future__ import annotations

import re

__all__ = ["smiles_formal_charge"]

_BRACKET = re.compile(r"\[([^\]]*)\]")
_ATOM_CLASS = re.compile(r":\d+$")
_CHARGE = re.compile(r"([+-])(\d+|\++|-+)?$")


def smiles_formal_charge(smiles: str) -> int:
    """Sum of the formal charges written in a SMILES string (bracket atoms only; others are neutral).

    Handles atom maps (``[O-:3]``), counts (``[Ca+2]``) and repeated signs (``[O--]``).  Needs no RDKit.
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a string, got {type(smiles).__name__}")
    total = 0
    for content in _BRACKET.findall(smiles):
        content = _ATOM_CLASS.sub("", content)
        m = _CHARGE.search(content)
        if m is None:
            continue
        sign = 1 if m.group(1) == "+" else -1
        rest = m.group(2) or ""
        if rest.isdigit():
            magnitude = int(rest)
        else:
            if rest and rest[0] != m.group(1):
                raise ValueError(f"cannot read the charge of bracket atom [{content}] in SMILES {smiles!r}")
            magnitude = 1 + len(rest)
        total += sign * magnitude
    return total
