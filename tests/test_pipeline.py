"""The streaming pipeline: stages overlap, keep order, pass errors on, stop cleanly; faces are edited in place."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact.api import TrackingOptions, edit_video
from reenact.pipeline import QUEUE_SIZE, stream
from reenact.video import VideoReader


def test_order_is_kept_through_threaded_stages() -> None:
    out = list(stream(range(200), [lambda x: x * 2, lambda x: x + 1]))
    assert out == [x * 2 + 1 for x in range(200)]


def test_stages_run_concurrently() -> None:
    def slow(x: int) -> int:
        time.sleep(0.01)
        return x

    started = time.perf_counter()
    assert len(list(stream(range(40), [slow, slow, slow]))) == 40
    # Three 10 ms stages over 40 items take ~0.4 s when they overlap and ~1.2 s when they don't.
    assert time.perf_counter() - started < 0.9


def test_an_error_in_a_stage_reaches_the_caller() -> None:
    def fails_at_5(x: int) -> int:
        if x == 5:
            raise ValueError("bad item 5")
        return x

    with pytest.raises(ValueError, match="bad item 5"):
        list(stream(range(100), [fails_at_5]))


def test_an_error_in_the_source_reaches_the_caller() -> None:
    def source():
        yield 1
        raise OSError("decode failed")

    with pytest.raises(OSError, match="decode failed"):
        list(stream(source(), [lambda x: x]))


def test_stopping_early_ends_every_thread_and_reads_ahead_only_a_little() -> None:
    produced = []

    def source():
        for i in range(10_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    for item in stream(source(), [lambda x: x, lambda x: x]):
        if item == 3:
            break
    time.sleep(0.3)
    assert threading.active_count() == before
    # Bounded queues: the source ran ahead by at most the items the queues and stages can hold.
    assert len(produced) <= 4 + 3 * (QUEUE_SIZE + 1) + 2


def test_live_mode_drops_stale_items_instead_of_queueing_them() -> None:
    """A source faster than the slowest stage: live mode passes on the newest items and counts the rest."""
    dropped: list[int] = []

    def camera():
        for i in range(300):
            time.sleep(0.002)
            yield i

    def slow(x: int) -> int:
        time.sleep(0.02)
        return x

    out = list(stream(camera(), [lambda x: x, slow], on_drop=dropped.append))
    assert out == sorted(out) and len(set(out)) == len(out)  # in order, nothing twice
    assert len(out) + len(dropped) == 300  # every item came out or was counted as dropped
    assert dropped and set(dropped) <= {0, 1, 2, 3}
    # The last item out is the camera's last (or nearly): what came out kept up with the source's present.
    assert out[-1] >= 297


def test_live_mode_stops_when_the_idle_check_raises() -> None:
    def stalled():
        yield 1
        time.sleep(10)
        yield 2

    def watchdog() -> None:
        raise TimeoutError("stalled")

    got = []
    with pytest.raises(TimeoutError):
        for item in stream(stalled(), [lambda x: x], on_drop=lambda i: None, on_idle=watchdog):
            got.append(item)
    assert got == [1]


@pytest.mark.usefixtures("require_face_model")
def test_edit_video_changes_what_the_editor_changed_and_nothing_else(shared_data: Path, tmp_path: Path) -> None:
    """An editor that darkens a disc over the mouth: each output frame is darker there and unchanged far away."""
    clip = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    out = tmp_path / "mouth.mp4"
    mouths = []

    def darken_mouth(crop, face, alignment, t):
        centre = alignment.to_crop(face.xy[[13, 14]]).mean(axis=0)
        mouths.append(face.xy[[13, 14]].mean(axis=0))
        edited = crop.copy()
        cv2.circle(edited, (int(centre[0]), int(centre[1])), crop.shape[0] // 10, (20, 20, 20), -1)
        return edited

    report = edit_video(clip, out, darken_mouth, TrackingOptions(crop_size=128))
    assert report.frames == 75 and report.faces_found == 75 and len(mouths) == 75
    with VideoReader(clip) as a, VideoReader(out) as b:
        for fa, fb, mouth in zip(a, b, mouths):
            diff = fb.image.astype(np.int16) - fa.image.astype(np.int16)
            darker = diff.mean(axis=2) < -25
            ys, xs = np.nonzero(darker)
            assert darker.sum() > 150  # the mouth got darker...
            # ... around the mouth, and only there
            assert np.abs(xs - mouth[0]).max() < 40 and np.abs(ys - mouth[1]).max() < 40
            far = np.hypot(*np.meshgrid(np.arange(360) - mouth[0], np.arange(288) - mouth[1])) > 90
            # Far from the face, only re-encoding noise (about 1.5 levels on average at crf 18), no real change.
            assert np.abs(diff[far]).mean() < 2.5
            assert (np.abs(diff[far]).max(axis=1) > 40).mean() < 0.001
