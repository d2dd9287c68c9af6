"""Readings of real videos that several test files take: MediaPipe's landmarks, frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reenact.face.tracker import FaceTracker
from reenact.video import VideoReader


def per_frame(path: Path, reading) -> np.ndarray:
    """Per frame of a video, ``reading`` of its face's landmarks (478, 2, frame pixels); NaN where MediaPipe finds no
    face."""
    rows = []
    with VideoReader(path) as reader, FaceTracker() as tracker:
        for frame in reader:
            found = tracker(frame.image, frame.time)
            rows.append(np.nan if found is None else reading(found.xy))
    return np.array(rows)


def mouth_gaps(path: Path) -> np.ndarray:
    """Per frame of a video, its face's lip gap over the face's width (NaN where MediaPipe finds no face)."""
    return per_frame(path, lambda xy: (xy[14, 1] - xy[13, 1]) / np.ptp(xy[:, 0]))
