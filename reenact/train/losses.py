"""Training losses. None needs a deformation label: motion is supervised by the landmarks MediaPipe finds."""

from __future__ import annotations

import torch

from reenact.face.regions import MESH


def landmark_motion_loss(moves: torch.Tensor, landmarks_a: torch.Tensor, landmarks_b: torch.Tensor) -> torch.Tensor:
    """Each landmark's predicted motion must bring A's landmark onto B's: moves = a - b (the backward flow at b).

    Squared error, so the motion learned is the mean that goes with an AU change: an absolute error would learn
    the median, which for most points is no motion at all, and the edits would come out too weak. Scaled so
    that a one-pixel error at 128 px weighs about 0.25.
    """
    error = moves[:, :MESH] - (landmarks_a[:, :MESH] - landmarks_b[:, :MESH])
    return (error**2).sum(dim=-1).mean() * 1000


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((output - target).abs() * mask).sum() / (mask.sum() * output.shape[1] + 1e-6)


def gradient_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 on image gradients: penalises blur that plain L1 tolerates."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return masked_l1(dx(output), dx(target), mask[..., :, 1:]) + masked_l1(dy(output), dy(target), mask[..., 1:, :])
