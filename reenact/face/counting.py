"""How many faces an input shows: what the error says when ``--face N`` asks for a face past the ones there are
(the tracker then finds "no face", which is not what went wrong)."""

from __future__ import annotations

import os

from reenact.face.tracker import FaceObservation, FaceTracker

SAMPLES = 10  # frames looked at, spread over the clip: enough to see a second person who is there most of the time


class _FaceCounter(FaceTracker):
    """A tracker that notes the most faces it was shown in one picture."""

    most = 0

    def _choose(self, faces: list[FaceObservation]) -> FaceObservation | None:
        self.most = max(self.most, len(faces))
        return super()._choose(faces)


def most_faces(path: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None,
               up_to: int = 8) -> int:
    """The most faces (up to ``up_to``) found in one of ``SAMPLES`` frames spread over a video, or in an image."""
    from reenact.video import VideoReader

    with VideoReader(path) as reader, _FaceCounter(model_path, max_faces=up_to, video_mode=False) as counter:
        step = max(1, (reader.info.frame_count or SAMPLES) // SAMPLES)
        for frame in reader:
            if frame.index % step == 0:
                counter(frame.image, frame.time)
        return counter.most


def face_index_message(face: int, path: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None
                       ) -> str | None:
    """The error for ``--face face`` where the input shows fewer faces (None where it shows none: no face at all)."""
    found = most_faces(path, model_path)
    if found == 0 or found > face:
        return None
    choices = "--face 0 (or largest)" if found == 1 else f"--face 0 to {found - 1}, or largest"
    return (f"--face {face}: only {found} face{'s' if found > 1 else ''} found in {path}, and faces are numbered from "
            f"0, left to right; use {choices}")
