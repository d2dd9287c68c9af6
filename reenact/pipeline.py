"""The streaming pipeline: decode -> track -> align -> (edit) -> paste -> encode, in overlapping stages.

Each stage runs in its own thread and hands items on through a small bounded queue, so at most a few frames are in
flight whatever the length of the video (memory stays flat) and decoding, MediaPipe, the generator and the encoder
overlap (all of them release the GIL in their native code). Items keep their order: every stage is one thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from reenact.face.align import Alignment, FaceAligner, crop_face, edit_mask, paste_back
from reenact.face.aus import blendshapes_to_aus
from reenact.face.tracker import FaceObservation, FaceTracker
from reenact.video import Frame

QUEUE_SIZE = 4
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Latest:
    """Live mode's hand-over: a put never waits; it replaces the item the next stage has not taken yet, which is
    counted as dropped. So no queue ever holds a stale frame, and latency cannot build up behind a slow stage."""

    def __init__(self, on_drop: Callable[[int], None], position: int) -> None:
        self.on_drop = on_drop
        self.position = position


def _put(q: queue.Queue[Any], item: object, stop: threading.Event, latest: _Latest | None = None) -> bool:
    if latest is not None and item is not _DONE and not isinstance(item, _Failure):
        while True:
            try:
                q.put_nowait(item)
                return True
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()
                    latest.on_drop(latest.position)
    # Blocking put that gives up when the pipeline is being torn down, so no thread hangs on a full queue.
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _feed(source: Iterable[Any], out: queue.Queue[Any], stop: threading.Event, latest: _Latest | None) -> None:
    try:
        for item in source:
            if stop.is_set() or not _put(out, item, stop, latest):
                return
        _put(out, _DONE, stop)
    except BaseException as exc:  # handed to the consumer, which re-raises it in the caller's thread
        _put(out, _Failure(exc), stop)


class Batched:
    """A stage that takes up to ``size`` consecutive items at once (a list) and gives back their results in order:
    what a GPU runs best (a batch of crops through the networks). The stream hands it full batches but for the
    last; live mode never batches (it would hold frames back)."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], size: int, name: str) -> None:
        self.fn, self.size, self.__name__ = fn, size, name

    def __call__(self, items: list[Any]) -> list[Any]:
        return self.fn(items)


def _stage(
    fn: Callable[[Any], Any], inq: queue.Queue[Any], out: queue.Queue[Any], stop: threading.Event,
    latest: _Latest | None,
) -> None:
    size = fn.size if isinstance(fn, Batched) else 1
    while not stop.is_set():
        items: list[Any] = []
        end = None
        while len(items) < size and end is None and not stop.is_set():
            try:
                item = inq.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE or isinstance(item, _Failure):
                end = item
            else:
                items.append(item)
        if items:
            try:
                results = fn(items) if isinstance(fn, Batched) else [fn(items[0])]
            except BaseException as exc:
                _put(out, _Failure(exc), stop)
                return
            for result in results:
                if not _put(out, result, stop, latest):
                    return
        if end is not None:
            _put(out, end, stop)
            return


def stream(
    source: Iterable[Any],
    stages: list[Callable[[Any], Any]],
    queue_size: int = QUEUE_SIZE,
    on_drop: Callable[[int], None] | None = None,
    on_idle: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """Yield ``stages[-1](...stages[0](item))`` for each item of ``source``, each stage in its own thread.

    An exception in the source or any stage is re-raised here, in the consumer's thread; stopping early (break,
    an exception in the consumer) shuts every thread down.

    Live mode (``on_drop`` given): every hand-over holds one item and a newer item replaces an untaken one, so
    a slow stage makes the ones before it drop frames instead of queueing them; ``on_drop(i)`` is called for
    each item dropped before stage ``i`` (``len(stages)``: before the consumer). ``on_idle`` is called about
    every 0.1 s while nothing arrives; an exception it raises (a stall) ends the stream.
    """
    stop = threading.Event()
    live = on_drop is not None
    if live and any(isinstance(fn, Batched) for fn in stages):
        raise ValueError("live mode takes no batched stage: it would hold frames back")
    size = 1 if live else queue_size
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=size) for _ in range(len(stages) + 1)]

    def latest(position: int) -> _Latest | None:
        return _Latest(on_drop, position) if on_drop is not None else None

    threads = [threading.Thread(target=_feed, args=(source, queues[0], stop, latest(0)), name="reenact-decode",
                                daemon=True)]
    for i, fn in enumerate(stages):
        name = f"reenact-{getattr(fn, '__name__', 'stage')}"
        threads.append(threading.Thread(target=_stage, args=(fn, queues[i], queues[i + 1], stop, latest(i + 1)),
                                        name=name, daemon=True))
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                item = queues[-1].get(timeout=0.1)
            except queue.Empty:
                if on_idle is not None:
                    on_idle()
                continue
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            # A live source blocked in a read (a stalled stream) cannot be interrupted; its thread is a daemon.
            thread.join(timeout=0.5 if live else 5)


# --- The face stages. Each is a callable on FrameState, run in its own thread by ``stream``. ---


@dataclasses.dataclass(frozen=True)
class EditedCrop:
    """An edited crop with what its paste-back needs to know beyond the pixels."""

    image: np.ndarray  # (S, S, 3) uint8, the aligned crop's size
    moved: np.ndarray | None = None  # (478, 2) where the landmarks moved to, crop pixels: the mask covers both places
    replaced: np.ndarray | None = None  # (S, S) where the crop is new content: the frame's own detail goes there too
    reference: np.ndarray | None = None  # (S, S, 3) the source warped as the edit warped it: what the colour match
    # compares the edit with (the same content in the same place); None compares with the crop as it was
    aus: np.ndarray | None = None  # (17,) the AUs the edit aims at: the face memory's entries are chosen by them
    pose: np.ndarray | None = None  # (3,) the head's pitch, yaw and roll in the edit, degrees: and by its pitch
    before: np.ndarray | None = None  # (478, 2) where the landmarks were, crop pixels: a mouth the edit closes is
    # the memory's too
    flow: np.ndarray | None = None  # (S, S, 2) float32 crop pixels: where each pixel's content came from (the
    # frame's own fine detail moves with it in the paste-back)


# What an editor does to a face: (aligned crop, the face, its alignment, time in s) -> the edited crop of the same
# size, or an EditedCrop. Giving back the very crop it was handed (the same array) says it changed nothing, and the
# frame is left as it is.
CropEditor = Callable[[np.ndarray, FaceObservation, Alignment, float], "np.ndarray | EditedCrop"]


@dataclasses.dataclass
class FrameState:
    """A frame on its way through the pipeline, gathering what each stage found."""

    frame: Frame
    face: FaceObservation | None = None
    aus: np.ndarray | None = None
    alignment: Alignment | None = None
    crop: np.ndarray | None = None
    edited: EditedCrop | None = None  # the edit stage's crop, until the paste stage puts it in the frame
    captured: float | None = None  # live mode: time.monotonic() when the frame was captured, for latency


class TrackStage:
    """Finds the chosen face and reads its AUs."""

    __name__ = "track"

    def __init__(self, tracker: FaceTracker) -> None:
        self.tracker = tracker

    def __call__(self, frame: Frame) -> FrameState:
        face = self.tracker(frame.image, frame.time)
        aus = None if face is None else blendshapes_to_aus(face.blendshapes)
        return FrameState(frame, face, aus)


class AlignStage:
    """Computes the time-smoothed alignment and cuts the face crop."""

    __name__ = "align"

    def __init__(self, aligner: FaceAligner) -> None:
        self.aligner = aligner

    def __call__(self, state: FrameState) -> FrameState:
        if state.face is None:
            self.aligner.reset()  # the next face may be elsewhere: do not smooth across the gap
            return state
        state.alignment = self.aligner(state.face.xy, state.frame.time)
        state.crop = crop_face(state.frame.image, state.alignment)
        return state


class EditPasteStage:
    """Runs the editor on the crop and pastes the result back into the full frame at its native resolution.

    Called, it does both; in a threaded pipeline its two halves are two stages (``stages``), so one frame's
    paste-back runs beside the next one's generator. ``batch``: the crops of that many consecutive frames go through
    the editor at once (an editor with ``generate_batch``; a GPU's way), else one at a time."""

    __name__ = "edit"

    def __init__(self, editor: CropEditor, color_match: bool = True, batch: int = 1) -> None:
        self.editor = editor
        self.color_match = color_match
        self.batch = batch
        # An editor on a CUDA GPU has the paste-back's frame-sized half (the warp into the frame and the blend) done
        # there too: only the frame's box around the face goes to the card and back. Not on Apple's MPS, which has no
        # float64 for the sampling grid: the CPU's OpenCV pastes there.
        device = getattr(editor, "device", None)
        self._apply = None
        if getattr(device, "type", None) == "cuda":
            from reenact.face.paste_gpu import apply_plan_on

            self._apply = apply_plan_on(device)

    def __call__(self, state: FrameState) -> FrameState:
        return self.paste(self.edit(state))

    def stages(self) -> list[Callable[[Any], Any]]:
        edit = Batched(self.edit_batch, self.batch, "edit") if self.batch > 1 else self.edit
        return [edit, self.paste]

    def edit(self, state: FrameState) -> FrameState:
        """The editor's crop, kept on the state for ``paste``."""
        return self.edit_batch([state])[0]

    def edit_batch(self, states: list[FrameState]) -> list[FrameState]:
        """``edit`` for consecutive frames, their crops through the editor at once where it can take a batch."""
        faces = [s for s in states if s.face is not None and s.alignment is not None and s.crop is not None]
        # frames without a face pass through untouched
        asks = [(s.crop, s.face, s.alignment, s.frame.time) for s in faces]
        # An editor that splits its work (``GeneratorEditor``: generate, then finish) leaves its finish to ``paste``.
        batch = getattr(self.editor, "generate_batch", None)
        if batch is not None:
            edits = batch(asks) if asks else []
        else:
            generate = getattr(self.editor, "generate", self.editor)
            edits = [generate(*ask) for ask in asks]
        for state, edited in zip(faces, edits):
            if edited is not state.crop:  # the very crop: the editor changed nothing, the frame stays as it is
                state.edited = edited if isinstance(edited, EditedCrop) else EditedCrop(edited)
        return states

    def paste(self, state: FrameState) -> FrameState:
        """The edited crop pasted back into the frame."""
        edited, state.edited = state.edited, None
        if edited is None or state.face is None or state.alignment is None or state.crop is None:
            return state
        finish = getattr(self.editor, "finish", None)
        edited = edited if finish is None else finish(edited)
        mask = edit_mask(state.alignment.to_crop(state.face.xy), edited.moved, state.alignment.crop_size)
        image = paste_back(state.frame.image, edited.image, state.crop, state.alignment, mask,
                           color_match=self.color_match, replaced=edited.replaced, reference=edited.reference,
                           apply=self._apply, flow=edited.flow)
        state.frame = dataclasses.replace(state.frame, image=image)
        return state

