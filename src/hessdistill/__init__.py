"""hessdistill: distil foundation force fields into small specialised students via energy Hessians.

Units everywhere: eV, Å, eV/Å, eV/Å²; the Hessian is H = d²E/dx² (not the force Jacobian -H).
"""

__version__ = "0.1.0"
