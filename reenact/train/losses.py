"""Training losses. None needs a deformation label: motion is supervised by the landmarks MediaPipe finds."""

from __future__ import annotations

import torch

from reenact.model.networks import sample_at
from reenact.train.pairs import MESH


def landmark_flow_loss(flow: torch.Tensor, landmarks_a: torch.Tensor, landmarks_b: torch.Tensor) -> torch.Tensor:
    """The backward flow at B's landmarks must point to A's: out(b) = A(b + flow(b)) = A(a)."""
    predicted = sample_at(flow, landmarks_b[:, :MESH])
    return (predicted - (landmarks_a[:, :MESH] - landmarks_b[:, :MESH])).abs().mean()


def smoothness(field: torch.Tensor) -> torch.Tensor:
    """Total variation: a face deforms smoothly."""
    return (field[..., 1:, :] - field[..., :-1, :]).abs().mean() + (field[..., 1:] - field[..., :-1]).abs().mean()


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((output - target).abs() * mask).sum() / (mask.sum() * output.shape[1] + 1e-6)


def gradient_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 on image gradients: penalises blur that plain L1 tolerates."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return masked_l1(dx(output), dx(target), mask[..., :, 1:]) + masked_l1(dy(output), dy(target), mask[..., 1:, :])
