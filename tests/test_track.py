"""`reenact track` on a real clip with audio: frames, timestamps and audio packets kept; overlays drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from reenact.video import VideoReader, probe

pytestmark = pytest.mark.usefixtures("require_face_model")


def packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0] if kind == "audio" else container.streams.video[0]
        return [(p.pts, bytes(p)) for p in container.demux(stream) if p.size]


def test_track_keeps_frames_timestamps_and_audio(shared_data: Path, tmp_path: Path) -> None:
    clip = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    out = tmp_path / "tracked.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "reenact", "track", str(clip), "-o", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "75 frames, face in 75" in result.stderr  # the one-line summary

    source, tracked = probe(clip), probe(out)
    assert (tracked.width, tracked.height) == (source.width, source.height)
    with VideoReader(clip) as a, VideoReader(out) as b:
        pairs = list(zip(a, b, strict=True))
    assert len(pairs) == 75
    assert [fb.time for _, fb in pairs] == pytest.approx([fa.time for fa, _ in pairs], abs=1e-6)
    # The audio is copied packet for packet, not re-encoded.
    assert tracked.audio_codec == source.audio_codec == "aac"
    assert packets(out, "audio") == packets(clip, "audio")
    # Something was drawn: the AU panel at top-left and landmarks on the face.
    fa, fb = pairs[10]
    assert np.abs(fb.image[:40, :40].astype(int) - fa.image[:40, :40]).mean() > 20
    assert np.abs(fb.image.astype(int) - fa.image).mean() > 3


def test_variable_frame_rate_stays_variable(shared_data: Path, tmp_path: Path) -> None:
    clip = shared_data / "train" / "video-retalking" / "1.mp4"
    out = tmp_path / "tracked.mp4"
    from reenact.api import track_video

    report = track_video(clip, out)
    with VideoReader(clip) as a, VideoReader(out) as b:
        ta, tb = [f.time for f in a], [f.time for f in b]
    assert report.frames == len(ta) == len(tb)
    assert tb == pytest.approx(ta, abs=1e-6)
    assert np.std(np.diff(ta)) > 1e-4  # the input really is variable-rate
