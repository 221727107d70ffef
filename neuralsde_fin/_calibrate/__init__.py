"""Calibration: the loss registry and the shared training loop behind ``nsf.calibrate``."""

from __future__ import annotations

from neuralsde_fin._calibrate._calibrate import METHOD_DEFAULTS, calibrate
from neuralsde_fin._calibrate._losses import LOSSES, Loss, SigKernelMMD, SigW1, get_loss, register
from neuralsde_fin._calibrate._sdegan_method import SDEGANLoss
from neuralsde_fin._calibrate._train import train

__all__ = [
    "LOSSES",
    "METHOD_DEFAULTS",
    "Loss",
    "SDEGANLoss",
    "SigKernelMMD",
    "SigW1",
    "calibrate",
    "get_loss",
    "register",
    "train",
]
