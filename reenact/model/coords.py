"""Crop pixels and grid_sample's normalised coordinates, for the networks and for what is painted after them."""

from __future__ import annotations


def normalise(points, size: int):
    """Crop pixels (OpenCV: pixel centres at integers) -> grid_sample's [-1, 1] coordinates (numpy or torch)."""
    return (points + 0.5) / size * 2 - 1


def denormalise(points, size: int):
    """grid_sample's [-1, 1] coordinates -> crop pixels."""
    return (points + 1) / 2 * size - 0.5
