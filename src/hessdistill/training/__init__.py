"""Training students: data with teacher Hessian rows, losses, the loop with checkpoints and resumption."""

from .losses import LossWeights, compute_loss, hessian_loss, student_jacobian_rows
from .loop import METHODS, TrainConfig, train

__all__ = ["LossWeights", "METHODS", "TrainConfig", "compute_loss", "hessian_loss", "student_jacobian_rows", "train"]
