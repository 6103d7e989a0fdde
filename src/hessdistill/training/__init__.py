"""Training students: options (config), data with teacher Hessian rows, losses, schedules (λ_H, learning rate),
checkpoints and resumption, and the loop."""

from .config import METHODS, TrainConfig
from .losses import LossWeights, compute_loss, hessian_loss, student_jacobian_rows
from .loop import train

__all__ = ["LossWeights", "METHODS", "TrainConfig", "compute_loss", "hessian_loss", "student_jacobian_rows", "train"]
