"""A short version of `benchmarks/soak.py`: a synthetic clip with sync marks through `reenact edit` in a child
process: every frame comes out, the audio is in sync at the end, and resident memory is flat once the edit runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
pytestmark = pytest.mark.usefixtures("require_face_model")


def test_a_long_edit_keeps_every_frame_its_sync_and_flat_memory(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from soak import FPS, soak_edit
    from synthetic_clip import write_synthetic_clip

    clip = write_synthetic_clip(tmp_path / "clip.mp4", 20.0, (320, 240), FPS, marks_every=5.0)
    report = soak_edit(clip, tmp_path / "edited.mp4")
    assert report["frames_out"] == report["frames_in"] == 20 * FPS
    assert report["marks"] == 4
    assert abs(report["sync_ms_last"]) <= 1000 / FPS  # within a frame at the end
    # MB: no growth while the edit streams. Resident memory swings by 30-60 MB from one tenth to the next with no
    # trend (one clean-clone run read 57 MB between the largest sample of the second half and its first), so the
    # last three tenths' median is held to the three before them: a leak keeps rising, a single swing does not.
    tenths = report["rss_mb_by_tenth"]
    assert float(np.median(tenths[7:])) - float(np.median(tenths[4:7])) <= 50


def test_live_on_a_looped_clip_runs_past_its_end_with_rising_timestamps(tmp_path: Path) -> None:
    import av

    sys.path.insert(0, str(BENCHMARKS))
    from soak import FPS, soak_live
    from synthetic_clip import write_synthetic_clip

    clip = write_synthetic_clip(tmp_path / "clip.mp4", 2.0, (320, 240), FPS, marks_every=5.0)
    report = soak_live(clip, tmp_path / "live.mp4", minutes=0.15)  # 9 s: the 2 s clip loops four times
    assert report["captured"] > 3 * 2 * FPS
    assert report["frames_out"] + report["dropped"] == report["captured"]
    assert sum(report["frames_out_by_minute"]) == report["frames_out"]
    assert len(report["p95_by_minute_ms"]) == 1
    with av.open(str(tmp_path / "live.mp4")) as container:
        times = [f.time for f in container.decode(video=0)]
    assert len(times) == report["frames_out"]
    assert all(b > a for a, b in zip(times, times[1:]))  # the loop's joins do not go back in time
    assert times[-1] > 6.0
