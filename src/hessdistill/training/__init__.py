"""Training students: options (config), data with teacher Hessian rows, losses, schedules (λ_H, learning rate),
checkpoints and resumption, and the loop."""

from .config import METHODS, TrainConfig
from .loop import train
from .losses import LossWeights, compute_loss, hessian_loss, student_jacobian_rows

__all__ = ["LossWeights", "METHODS", "TrainConfig", "compute_loss", "hessian_loss", "student_jacobian_rows", "train"]
