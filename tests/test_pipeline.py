"""The streaming pipeline: stages overlap, keep order, pass errors on, stop cleanly; faces are edited in place."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact.api import TrackingOptions, edit_video
from reenact.pipeline import QUEUE_SIZE, Batched, stream
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


def test_a_batched_stage_takes_full_batches_in_order_and_the_last_one_short() -> None:
    sizes: list[int] = []

    def doubled(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return [x * 2 for x in items]

    out = list(stream(range(21), [lambda x: x + 1, Batched(doubled, 8, "double"), lambda x: x - 1]))
    assert out == [(x + 1) * 2 - 1 for x in range(21)]
    assert sizes == [8, 8, 5]


def test_an_error_in_a_batched_stage_reaches_the_caller_and_live_mode_refuses_one() -> None:
    def fails(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("bad batch")
        return items

    with pytest.raises(ValueError, match="bad batch"):
        list(stream(range(40), [Batched(fails, 4, "fails")]))
    with pytest.raises(ValueError, match="live"):
        list(stream(range(4), [Batched(fails, 4, "fails")], on_drop=lambda stage: None))


def test_the_paste_back_goes_to_the_gpu_only_with_a_cuda_editor() -> None:
    """A CUDA editor's stage pastes with torch on its card; a CPU or MPS one (MPS has no float64 for the grid) with
    OpenCV. Choosing touches no device, so it is checked here without one."""
    import torch

    from reenact.pipeline import EditPasteStage

    class Editor:
        def __init__(self, device: str) -> None:
            self.device = torch.device(device)

        def __call__(self, crop, face, alignment, t):
            return crop

    assert EditPasteStage(Editor("cuda:0"))._apply is not None
    assert EditPasteStage(Editor("cpu"))._apply is None
    assert EditPasteStage(Editor("mps"))._apply is None
    assert EditPasteStage(lambda crop, face, alignment, t: crop)._apply is None


@pytest.mark.usefixtures("require_face_model")
def test_the_batched_edit_gives_the_per_frame_edit_within_one_level(shared_data: Path) -> None:
    """File jobs put 8 crops through the networks at once: on a real clip, for an AU edit and for a driving face's
    landmark moves, with a frame without a face among them, each frame's edit (pixels, where it lands, what is
    painted) is the one frame at a time gives, to within one 8-bit level."""
    from reenact.api import GeneratorOptions
    from reenact.editing import ExpressionTarget
    from reenact.face.align import FaceAligner
    from reenact.face.tracker import FaceTracker
    from reenact.pipeline import AlignStage, EditPasteStage, TrackStage

    tracking = TrackingOptions()
    with FaceTracker(tracking.face_model) as tracker, VideoReader(shared_data / "train" / "grid_s1" / "bbaf2n.mp4") as clip:
        track, align = TrackStage(tracker), AlignStage(FaceAligner(tracking.crop_size))
        frames = [align(track(frame)) for frame, _ in zip(clip, range(20))]
    frames[9].face = frames[9].crop = frames[9].alignment = None  # a frame where the face was lost
    surprised = ExpressionTarget((), "surprised")

    def drooping(points: np.ndarray, t: float) -> np.ndarray:  # a driving face's moves: the jaw drops over time
        moves = np.zeros_like(points)
        moves[152, 1] = moves[17, 1] = -0.02 * (1 + t)
        return moves

    for editor_options in ({}, {"landmark_moves": lambda model: drooping, "asked": False}):
        edits = []
        for batch in (1, 8):
            editor = GeneratorOptions(memory=False).editor(lambda aus, t: surprised(aus, t), **editor_options)
            stage = EditPasteStage(editor, batch=batch)
            states = [dataclasses.replace(state) for state in frames]
            for i in range(0, len(states), batch):
                stage.edit_batch(states[i:i + batch])
            edits.append([state.edited for state in states])
        one, batched = edits
        assert one[9] is None and batched[9] is None
        for a, b in zip(one[:9] + one[10:], batched[:9] + batched[10:]):
            assert np.abs(a.image.astype(int) - a.reference.astype(int)).max() > 10  # a real edit
            assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1
            assert np.abs(a.moved - b.moved).max() < 0.05
            assert (a.replaced is None) == (b.replaced is None)


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
            # Far from the face, only re-encoding noise (about 1.5 levels on average), no real change.
            assert np.abs(diff[far]).mean() < 2.5
            assert (np.abs(diff[far]).max(axis=1) > 40).mean() < 0.001
