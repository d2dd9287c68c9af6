"""The face memory (`reenact.memory`) and the first pass (`reenact.tracks`) on real clips, through the real pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from reenact.face.tracker import FaceTracker
from reenact.memory import FaceMemory, MemoryCompositor, opening
from reenact.model.networks import MOUTH
from reenact.video import VideoReader, probe

pytestmark = pytest.mark.usefixtures("require_face_model")
PROBES = Path(__file__).parents[1] / "probes"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reenact", *map(str, args), "--quiet"], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def grid_rows(shared_data: Path):
    """A GRID speaker's clip as the pipeline sees it: per frame (time, 256² crop, landmarks, AUs, head pose)."""
    sys.path.insert(0, str(PROBES))
    from face_memory import clip_frames

    return clip_frames(shared_data / "train" / "grid_s1" / "bbaf2n.mp4")


@pytest.fixture(scope="module")
def grid_speaker_rows(shared_data: Path, grid_rows):
    """Four of one GRID speaker's clips, one after another (12 s): long enough to learn his own motion from."""
    from face_memory import clip_frames

    rows = list(grid_rows)
    for name in ("bbaf4p", "bbal6n", "bbal8p"):
        start = rows[-1][0] + 0.04
        rows += [(start + t, *rest) for t, *rest in clip_frames(shared_data / "train" / "grid_s1" / f"{name}.mp4")]
    return rows


def test_the_memory_opens_a_closed_mouth_with_the_persons_own_teeth(grid_rows) -> None:
    """A closed mouth opened as far as a real open frame B (B's own landmark moves), the memory built without the
    frames within 1 s of B: inside B's mouth the result is much closer to B with the memory than with the paint."""
    sys.path.insert(0, str(PROBES))
    from face_memory import compare, pick_pairs

    from reenact.model.io import load_generator

    model = load_generator(None).eval()
    pairs = pick_pairs(grid_rows, MOUTH, 2)
    assert pairs
    gains = []
    for a, b in pairs:
        row = compare(model, grid_rows, a, b, MOUTH, "landmarks")
        assert row is not None  # the mouth was opened past what A shows
        gains.append(row["part_memory"] - row["part_paint"])
    assert np.mean(gains) > 2.0  # dB (5.7 measured over the held-out clips)


def test_a_mouth_an_edit_closes_is_the_persons_own_closed_mouth(shared_data: Path) -> None:
    """An open mouth closed as far as a real closed frame B (B's own landmark moves), the memory built without the
    frames within 1 s of B: a warp squashes the teeth between the closed lips; the memory puts the speaker's own mouth
    in, lips and all, much closer to B (a held-out speaker talking with her mouth wide open)."""
    sys.path.insert(0, str(PROBES))
    from face_memory import clip_frames, compare, pick_pairs

    from reenact.model.io import load_generator

    rows = clip_frames(shared_data / "train" / "talking-face_pc-avs" / "00373.mp4")
    model = load_generator(None).eval()
    pairs = pick_pairs(rows, MOUTH, 2, closing=True)
    results = [compare(model, rows, a, b, MOUTH, "landmarks") for a, b in pairs]
    assert len(pairs) == 2 and all(r is not None for r in results)  # each was closed, and the memory put a mouth in
    gains = [r["part_memory"] - r["part_paint"] for r in results]
    assert np.mean(gains) > 4.0, gains  # dB inside B's lips (9.4 measured)


def test_a_closed_eye_is_the_persons_own_closed_eye(grid_speaker_rows) -> None:
    """An open eye closed as far as a real blink B (B's own landmark moves), the memory built without the frames within
    1 s of B: between the skin lines above and below the eyes, the result is closer to B with the memory (the whole
    eye from one of the speaker's other blinks) than with the painted lid."""
    sys.path.insert(0, str(PROBES))
    from face_memory import compare, pick_pairs

    from reenact.model.io import load_generator

    model = load_generator(None).eval()
    rows = [compare(model, grid_speaker_rows, a, b, 0, "landmarks") for a, b in pick_pairs(grid_speaker_rows, 0, 3)]
    gains = [row["part_memory"] - row["part_paint"] for row in rows if row is not None]
    assert len(gains) >= 2
    # dB: 3.5 here (5.8, 2.8, 2.0); with the remembered lid put only where the paint went, 1.2 (2.7, 0.7, 0.3).
    assert np.mean(gains) > 2.5, gains


def test_the_persons_own_motion_opens_the_mouth_as_far_as_their_own_frames_show(grid_speaker_rows) -> None:
    """Edited to an open frame's AUs, a closed mouth opens nearer B's opening with the motion learned from the
    speaker's own frames than with the model's fields (held-out clips: 0.82 against 0.55 of the way)."""
    sys.path.insert(0, str(PROBES))
    from face_memory import pick_pairs
    from own_motion import opening_shares

    from reenact.model.io import load_generator

    shares = opening_shares(load_generator(None).eval(), grid_speaker_rows, pick_pairs(grid_speaker_rows, MOUTH, 3, 0.1))
    fields, own = shares["fields"], shares["own"]
    assert len(own) >= 2
    assert np.mean(own) > np.mean(fields) + 0.1 and 0.6 < np.mean(own) < 1.3, (fields, own)


def test_the_own_motion_of_a_first_pass_in_segments_is_the_whole_clips(grid_speaker_rows) -> None:
    """Two memories, each of half the clip, merged: the same own motion as one memory of all of it; only the mouth's
    opening AUs are fitted, inside their fields' regions; a clip too short to fit keeps the model's fields."""
    from reenact.face.aus import AU_NAMES
    from reenact.model.io import load_generator
    from reenact.own_motion import FITTED_AUS, MIN_FRAMES

    model = load_generator(None)
    basis, pose_basis = (p.detach().numpy().astype(np.float64) for p in (model.motion.basis, model.motion.pose_basis))
    whole, first, second = FaceMemory(), FaceMemory(), FaceMemory()
    half = len(grid_speaker_rows) // 2
    for i, (t, crop, points, aus, pose) in enumerate(grid_speaker_rows):
        whole.observe(crop, points, t, aus, pose)
        (first if i < half else second).observe(crop, points, t, aus, pose)
    first.merge(second)
    expected = whole.motion.extra_moves(basis, pose_basis)
    assert expected is not None and np.allclose(first.motion.extra_moves(basis, pose_basis), expected, atol=1e-6)
    fitted = [AU_NAMES.index(name) for name in FITTED_AUS]
    others = [k for k in range(len(AU_NAMES)) if k not in fitted]
    assert not expected[others].any() and all(expected[k].any() for k in fitted)
    outside = np.linalg.norm(basis[fitted], axis=2) == 0
    assert not expected[fitted][outside].any()

    short = FaceMemory()
    for t, crop, points, aus, pose in grid_speaker_rows[: MIN_FRAMES - 1]:
        short.observe(crop, points, t, aus, pose)
    assert short.motion.extra_moves(basis, pose_basis) is None


def test_a_remembered_mouth_meets_the_target_lips_with_no_second_lip(grid_rows) -> None:
    """A closed mouth edited open toward a real open frame: the memory entry put in is fitted so its own inner lip
    lines lie on the target's, not inside the opening (a second lip above the moved one, seen on a held-out face
    when the outer lip lines were fitted too)."""
    sys.path.insert(0, str(PROBES))
    from face_memory import compare, pick_pairs

    from reenact.model.io import load_generator

    model = load_generator(None).eval()
    rows = [compare(model, grid_rows, a, b, MOUTH, "aus") for a, b in pick_pairs(grid_rows, MOUTH, 2, wide=0.1)]
    inside = [row for row in rows if row is not None and "lip_inside_px" in row]
    assert inside
    for row in inside:  # 256-pixel crops
        assert row["lip_inside_px"] < 1.0, row  # fitted on the outer lines too: 1.19 px on one of these pairs


def test_the_memory_stays_within_its_cap_and_keeps_a_spread_of_openings(grid_rows) -> None:
    memory = FaceMemory()
    for _ in range(20):  # the clip seen twenty times over: 1,500 frames
        for t, crop, points, aus, pose in grid_rows:
            memory.observe(crop, points, t, aus, pose)
    # At most ten bands of opening times 18 of head pitch an eye, and for the mouth ten times three bands of AU12
    # times three of AU26.
    assert 3 <= len(memory) <= 2 * 10 * 18 + 10 * 3 * 3
    assert len(memory.entries["mouth"]) > len({cell[0] for cell in memory.entries["mouth"]})  # AU bands used
    assert all(len(cell) == 2 for cell in memory.entries["right eye"])  # pitch bands used
    mouths = sorted(e.opening for e in memory.entries["mouth"].values())
    seen = [opening(points, MOUTH) for _, _, points, *_ in grid_rows]
    assert mouths[0] < 0.05 and mouths[-1] > 0.8 * max(seen)  # from closed to about the widest the clip shows


def test_of_two_mouths_as_open_the_one_whose_aus_are_nearer_the_targets_is_put_in(grid_rows) -> None:
    """Two remembered mouths open alike, one smiling: a target that smiles gets the smiling one, one that does not
    the other; without target AUs, the nearer opening decides. A held choice is kept for a small change."""
    from reenact.face.aus import AU_NAMES

    memory = FaceMemory()
    _, crop, points, aus, _ = max(grid_rows, key=lambda row: opening(row[2], MOUTH))
    smile = AU_NAMES.index("AU12")
    plain, smiling = aus.copy(), aus.copy()
    plain[smile], smiling[smile] = 0.0, 2.5
    memory.observe(crop, points, 0.0, plain)
    memory.observe(crop, points, 1.0, smiling)
    assert len(memory.entries["mouth"]) == 2  # one cell each: the same opening, AU12 in different bands
    target = opening(points, MOUTH)
    assert memory.nearest("mouth", target, smiling).time == 1.0
    assert memory.nearest("mouth", target, plain).time == 0.0
    assert memory.nearest("mouth", target) is not None
    painted = np.zeros(crop.shape[:2], np.float32)
    painted[int(points[13, 1]):int(points[14, 1]) + 1, int(points[78, 0]):int(points[308, 0])] = 1.0
    compositor = MemoryCompositor(memory)
    compositor(crop, painted, points, smiling)
    assert compositor.entry_in_use("mouth").time == 1.0
    slightly = smiling.copy()
    slightly[smile] = 1.1  # nearer the plain one now (1.1 against 1.4), but by less than the hold: kept
    compositor(crop, painted, points, slightly)
    assert compositor.entry_in_use("mouth").time == 1.0
    compositor(crop, painted, points, plain)
    assert compositor.entry_in_use("mouth").time == 0.0


def test_a_broad_smile_is_not_given_an_open_mouth_that_never_smiled(grid_rows) -> None:
    """A person whose open mouths never smiled: a target smiling 2 AU12 wider is painted (the upper teeth), not given
    their talking mouth (the dark under the upper lip read as a shout); a mouth closed onto the same target still is
    theirs (closed lips show no teeth)."""
    from reenact.face.aus import AU_NAMES

    _, crop, points, aus, _ = max(grid_rows, key=lambda row: opening(row[2], MOUTH))
    smile = AU_NAMES.index("AU12")
    plain, broad = aus.copy(), aus.copy()
    plain[smile], broad[smile] = 0.0, 2.0
    memory = FaceMemory()
    memory.observe(crop, points, 0.0, plain)
    target = opening(points, MOUTH)
    assert memory.nearest("mouth", target, plain) is not None
    assert memory.nearest("mouth", target, broad) is None
    assert memory.nearest("mouth", target, broad, smile=False) is not None


def test_a_change_of_entry_is_made_whole_once_it_holds(grid_rows) -> None:
    """Where the mouth in use changes (a smiling target, then one that does not smile, each near enough to stand in for the other), the new one is put in once it
    has been the choice for two frames running, whole: the frame between shows the old mouth alone, never the two
    through each other (faded, a shouting driver's mouth showed a see-through second row of teeth)."""
    from reenact.face.aus import AU_NAMES

    memory = FaceMemory()
    rows = sorted(grid_rows, key=lambda row: opening(row[2], MOUTH))
    (_, crop, points, aus, _), (_, other, other_points, *_) = rows[-1], rows[-2]
    smile = AU_NAMES.index("AU12")
    plain, smiling = aus.copy(), aus.copy()
    plain[smile], smiling[smile] = 0.0, 1.4  # both stand in for either: the hold decides
    memory.observe(crop, points, 0.0, plain)
    memory.observe(other, other_points, 1.0, smiling)  # another frame's mouth: the two entries look different
    assert len(memory.entries["mouth"]) == 2
    painted = np.zeros(crop.shape[:2], np.float32)
    painted[int(points[13, 1]):int(points[14, 1]) + 1, int(points[78, 0]):int(points[308, 0])] = 1.0
    alone = {name: MemoryCompositor(memory)(crop, painted, points, target)[0]
             for name, target in (("plain", plain), ("smiling", smiling))}
    assert (np.abs(alone["smiling"].astype(float) - alone["plain"]).sum(axis=2) > 30).sum() > 100  # unlike mouths
    compositor = MemoryCompositor(memory)
    assert np.array_equal(compositor(crop, painted, points, smiling)[0], alone["smiling"])
    assert np.array_equal(compositor(crop, painted, points, plain)[0], alone["smiling"])  # not yet: one frame
    assert compositor.entry_in_use("mouth").time == 1.0
    for _ in range(3):
        assert np.array_equal(compositor(crop, painted, points, plain)[0], alone["plain"])  # then whole
    assert compositor.entry_in_use("mouth").time == 0.0


def test_a_remembered_mouth_near_enough_for_one_frame_of_paint_does_not_pop_in(grid_rows) -> None:
    """A mouth painted frame after frame, near enough to a remembered one for a single frame (the README's surprised
    GRID speaker, frame 22, got a mouth of clenched teeth between two open ones): that frame stays painted; two frames
    running get the remembered mouth whole; and a mouth opened past it again goes back to the paint at once (a
    remembered mouth stretched far, its teeth stood tall). Painted afresh, the same target gets it at once."""
    _, crop, points, aus, _ = max(grid_rows, key=lambda row: opening(row[2], MOUTH))
    memory = FaceMemory()
    memory.observe(crop, points, 0.0, aus)
    crop = min(grid_rows, key=lambda row: opening(row[2], MOUTH))[1]  # the edit: another frame's mouth, painted over
    wide = points.copy()
    wide[[14, 87, 178, 88, 95, 317, 402, 318, 324, 17, 84, 314]] += (0, 25)  # nothing remembered is near enough
    painted = np.zeros(crop.shape[:2], np.float32)
    painted[int(points[13, 1]):int(wide[14, 1]), int(points[78, 0]):int(points[308, 0])] = 1.0
    whole = MemoryCompositor(memory)(crop, painted, points, aus)[0]  # painted afresh: all of it
    assert (np.abs(whole.astype(float) - crop).sum(axis=2) > 0).sum() > 100
    compositor = MemoryCompositor(memory)
    for _ in range(3):
        assert np.array_equal(compositor(crop, painted, wide, aus)[0], crop)  # the paint
    assert np.array_equal(compositor(crop, painted, points, aus)[0], crop)  # a single frame near enough: the paint
    assert np.array_equal(compositor(crop, painted, wide, aus)[0], crop)
    compositor(crop, painted, points, aus)
    assert np.array_equal(compositor(crop, painted, points, aus)[0], whole)  # two frames running: all of it
    assert np.array_equal(compositor(crop, painted, wide, aus)[0], crop)  # opened past it: the paint at once


def test_an_eye_with_nothing_near_enough_takes_its_own_from_the_frame_of_the_other_eyes(grid_rows) -> None:
    """The two eyes of one frame belong together: where one eye's remembered lid is near enough and the other's from
    the same frame is a little further than the reach (a held-out blink closed one eye to 0.057 and the other to
    0.085), both are put in, not one remembered lid beside a painted one. Twice the reach away, the paint stays."""
    from reenact.memory import _NEAR_ENOUGH
    from reenact.model.networks import GAP_CONTOURS

    _, crop, points, aus, pose = max(grid_rows, key=lambda row: opening(row[2], 1))
    memory = FaceMemory()
    memory.observe(crop, points, 0.0, aus, pose)
    right, left = opening(points, 0), opening(points, 1)
    lower = list(GAP_CONTOURS[1][2][1:-1])  # the left eye's lower edge, corners kept
    width = float(np.linalg.norm(points[GAP_CONTOURS[1][1][-1]] - points[GAP_CONTOURS[1][1][0]]))
    reach = _NEAR_ENOUGH["left eye"]
    assert memory.nearest("left eye", left - 1.5 * reach, aus) is None
    assert memory.nearest("left eye", left - 1.5 * reach, aus, partner=("right eye", right)).time == 0.0
    assert memory.nearest("left eye", left - 2.5 * reach, aus, partner=("right eye", right)) is None
    assert memory.nearest("left eye", left - 1.5 * reach, aus, partner=("right eye", right + 2 * reach)) is None
    narrowed = points.copy()
    narrowed[lower, 1] -= 1.5 * reach * width  # the left eye narrowed past the reach, the right as remembered
    assert abs(opening(narrowed, 1) - (left - 1.5 * reach)) < 0.01
    painted = np.zeros(crop.shape[:2], np.float32)
    for eye in (0, 1):
        xy = points[[i for contour in GAP_CONTOURS[eye] for i in contour]]
        (x0, y0), (x1, y1) = xy.min(axis=0).astype(int), xy.max(axis=0).astype(int)
        painted[y0:y1, x0:x1] = 1.0
    compositor = MemoryCompositor(memory)
    compositor(crop, painted, narrowed, aus, float(pose[0]))
    assert compositor.entry_in_use("right eye").time == 0.0
    assert compositor.entry_in_use("left eye").time == 0.0


def test_of_two_closed_eyes_the_one_seen_nearer_the_targets_head_pitch_is_put_in(grid_rows) -> None:
    """A closed eye looks different from above and from below: two remembered blinks of one opening, seen at head
    pitches 15 degrees apart, are both kept, and a target gets the one seen nearer its own pitch."""
    memory = FaceMemory()
    _, crop, points, aus, pose = min(grid_rows, key=lambda row: opening(row[2], 0))
    level, down = pose.copy(), pose.copy()
    down[0] += 15.0
    memory.observe(crop, points, 0.0, aus, level)
    memory.observe(crop, points, 1.0, aus, down)
    assert len(memory.entries["right eye"]) == 2
    target = opening(points, 0)
    assert memory.nearest("right eye", target, aus, float(down[0]) - 2.0).time == 1.0
    assert memory.nearest("right eye", target, aus, float(level[0]) + 2.0).time == 0.0
    painted = np.zeros(crop.shape[:2], np.float32)
    eye = points[[33, 133, 159, 145]]
    painted[int(eye[:, 1].min()):int(eye[:, 1].max()) + 2, int(eye[:, 0].min()):int(eye[:, 0].max())] = 1.0
    compositor = MemoryCompositor(memory)
    compositor(crop, painted, points, aus, float(down[0]))
    assert compositor.entry_in_use("right eye").time == 1.0
    compositor(crop, painted, points, aus, float(level[0]))  # an eye's change is made at once
    assert compositor.entry_in_use("right eye").time == 0.0


def test_with_nothing_near_enough_the_paint_stays(grid_rows) -> None:
    """A memory of closed mouths only has nothing for a wide-open one: the edit comes back as painted."""
    memory = FaceMemory()
    for t, crop, points, *_ in grid_rows:
        if opening(points, MOUTH) < 0.03:
            memory.observe(crop, points, t)
    _, crop, points, *_ = grid_rows[0]
    wide = points.copy()
    wide[[14, 87, 178, 88, 95, 317, 402, 318, 324, 17, 84, 314]] += (0, 25)  # the lower lip far down
    painted = np.zeros(crop.shape[:2], np.float32)
    painted[int(points[13, 1]):int(wide[14, 1]), int(points[78, 0]):int(points[308, 0])] = 1.0
    image, replaced = MemoryCompositor(memory)(crop, painted, wide)
    assert np.array_equal(image, crop) and np.array_equal(replaced, painted)


def test_a_still_image_and_no_memory_give_the_one_pass_edit(astronaut: np.ndarray, shared_data: Path,
                                                             tmp_path: Path) -> None:
    """A still image has no first pass: with or without --no-memory the edit is the same (the paint). On a clip,
    --no-memory is the single pass of before: the same output as the API's one-pass edit_video."""
    from reenact.api import GeneratorOptions, edit_video
    from reenact.editing import ExpressionTarget

    still = tmp_path / "astronaut.png"
    cv2.imwrite(str(still), astronaut[:, :, ::-1])
    outs = {}
    for name, extra in (("memory", []), ("paint", ["--no-memory"])):
        outs[name] = tmp_path / f"{name}.png"
        assert run_cli("edit", still, "-o", outs[name], "--preset", "surprised", *extra).returncode == 0
    assert np.array_equal(cv2.imread(str(outs["memory"])), cv2.imread(str(outs["paint"])))

    clip = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    single, remembered, api = tmp_path / "single.mp4", tmp_path / "memory.mp4", tmp_path / "api.mp4"
    assert run_cli("edit", clip, "-o", single, "--preset", "surprised", "--no-memory").returncode == 0
    assert run_cli("edit", clip, "-o", remembered, "--preset", "surprised").returncode == 0
    edit_video(clip, api, GeneratorOptions(memory=False).editor(ExpressionTarget(preset="surprised")))

    with FaceTracker(video_mode=False) as tracker:
        lips = tracker(next(iter(VideoReader(clip))).image, 0.0).xy[[0, 17, 61, 291]]
    (x0, y0), (x1, y1) = lips.min(axis=0).astype(int) - 6, lips.max(axis=0).astype(int) + 6

    def mouth_psnr(path: Path) -> float:  # over the whole clip, in the box around the mouth
        with VideoReader(path) as a, VideoReader(api) as b:
            pairs = [(x.image[y0:y1, x0:x1], y.image[y0:y1, x0:x1]) for x, y in zip(a, b, strict=True)]
        return _psnr(np.stack([p for p, _ in pairs]), np.stack([q for _, q in pairs]))

    # The one pass, but for MediaPipe (under load its landmarks can differ in the last bits between processes, and
    # the smoothed alignment carries that on: 45 dB over the whole frame was seen); with the memory, his own teeth
    # replace the painted ones in the mouth.
    single_db, memory_db = mouth_psnr(single), mouth_psnr(remembered)
    assert memory_db < 30 and single_db > memory_db + 8, (single_db, memory_db)  # 21.7 and identical, measured


def test_a_video_edit_opens_the_mouth_as_far_as_the_speakers_own_motion_says(shared_data: Path, tmp_path: Path) -> None:
    """`reenact edit --au AU26=+2` of a GRID clip, through the CLI: with the first pass (the speaker's own mouth motion
    and his own mouths) MediaPipe finds the mouth opened much further than with --no-memory (the model's fields and
    the paint). Measured: an opening rise of 0.102 against 0.019 (inner-lip gap over mouth width)."""
    from reenact.face.align import estimate_alignment

    clip = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"

    def openings(path: Path) -> np.ndarray:
        found = []
        with VideoReader(path) as reader, FaceTracker() as tracker:
            for frame in reader:
                face = tracker(frame.image, frame.time)
                found.append(np.nan if face is None else opening(estimate_alignment(face.xy, 256).to_crop(face.xy), MOUTH))
        return np.array(found)

    rises = {}
    for name, extra in (("memory", []), ("paint", ["--no-memory"])):
        out = tmp_path / f"{name}.mp4"
        assert run_cli("edit", clip, "-o", out, "--au", "AU26=+2", *extra).returncode == 0
        rises[name] = float(np.nanmean(openings(out) - openings(clip)))
    assert rises["memory"] > 0.05 and rises["memory"] > 2 * rises["paint"], rises


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def test_a_face_lost_for_a_few_frames_is_edited_through(shared_data: Path, tmp_path: Path) -> None:
    """Frames 30-33 of a GRID clip are blurred as by a fast turn, and MediaPipe loses the face there. The first
    pass bridges the gap, so those frames are edited like their neighbours; the single pass leaves them unedited
    between edited ones."""
    source = tmp_path / "lost.mp4"
    with VideoReader(shared_data / "train" / "grid_s1" / "bbaf2n.mp4") as reader, av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        frames = []
        for frame in reader:
            image = cv2.GaussianBlur(frame.image, (0, 0), 12) if 30 <= frame.index < 34 else frame.image
            frames.append(image)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    with FaceTracker() as tracker:
        decoded = [f.image for f in VideoReader(source)]
        lost = [i for i, image in enumerate(decoded) if tracker(image, i / 25) is None]
    assert set(lost) & set(range(30, 34))  # the blur does lose the face

    def edited(extra: list[str]) -> np.ndarray:  # per frame: does it differ from the input?
        out = tmp_path / f"out{len(extra)}.mp4"
        assert run_cli("edit", source, "-o", out, "--preset", "surprised", *extra).returncode == 0
        with VideoReader(out) as reader:
            # Re-encoding alone leaves 43-44 dB; an edit, 31-32 dB on the sharp frames and 39 dB on the blurred ones
            return np.array([_psnr(f.image, d) < 41 for f, d in zip(reader, decoded, strict=True)])

    bridged, single = edited([]), edited(["--no-memory"])
    assert bridged[20:45].all()  # every frame around the loss is edited
    assert not single[lost].any() and single[20:29].all()  # without the first pass, the lost frames were not


def _two_speakers(shared_data: Path, out: Path, frames: int = 220) -> Path:
    """Two copies of a GRID speaker side by side; the left one shrinks from larger than the right to smaller, so a
    tracker choosing the largest face afresh midway would take the right one."""
    with VideoReader(shared_data / "train" / "grid_s1" / "bbaf2n.mp4") as reader:
        faces = [f.image for f in reader]
    h, w = faces[0].shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 2 * w + 64, 2 * int(0.7 * h), "yuv420p"
        for i in range(frames):
            canvas = np.full((stream.height, stream.width, 3), 90, np.uint8)
            face = faces[i % len(faces)]
            scale = max(1.3 - 1.2 * i / frames, 0.7)  # smaller than the right one from about frame 90 on
            left = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)[: stream.height, :w]
            canvas[: left.shape[0], : left.shape[1]] = left
            canvas[: h, w + 64:] = face
            container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(stream.encode())
    return out


def test_a_first_pass_tracked_in_segments_is_one_persons_track(shared_data: Path, tmp_path: Path) -> None:
    """Segments tracked side by side give the one-segment track and memory; where a fresh tracker would choose
    another person at a segment's start, the segment follows the person the one before it ended on."""
    from reenact.tracks import FaceTrack

    clip = _two_speakers(shared_data, tmp_path / "two.mp4")
    runs = {}
    for segments in (1, 2):
        memory = FaceMemory()
        folder = tmp_path / f"track{segments}"
        folder.mkdir()
        track = FaceTrack.record(probe(clip), FaceTracker, folder, 128, memory, segments=segments)
        try:
            runs[segments] = (track.found.copy(), np.array([track.face(i).centre for i in range(len(track))]),
                              {name: sorted(bands) for name, bands in memory.entries.items()})
        finally:
            track.close()
    (found1, centres1, bands1), (found2, centres2, bands2) = runs[1], runs[2]
    assert found1.all() and found2.all()
    width = VideoReader(clip).info.width
    assert (centres1[:, 0] < width / 2).all()  # one tracker follows the left face throughout
    assert (centres2[:, 0] < width / 2).all()  # so do two, though the right face is the larger at the cut
    apart = np.abs(centres2 - centres1).max(axis=1)
    assert np.median(apart) < 0.1 and apart.max() < 5.0  # pixels: the same face, re-found at the cut
    assert bands2["mouth"] == bands1["mouth"]
    for eye in ("right eye", "left eye"):  # a pitch read from a face re-found at the cut can cross a band's edge
        assert {cell[0] for cell in bands2[eye]} == {cell[0] for cell in bands1[eye]}
        assert len(set(bands2[eye]) ^ set(bands1[eye])) <= 2
    with VideoReader(clip, first=110) as reader, FaceTracker() as fresh:  # the cut of two segments
        assert fresh(next(reader).image, 0.0).centre[0] > width / 2  # a fresh choice there is the right face


def test_a_laughing_drivers_lids_are_the_speakers_own_not_his_lashes_drawn_out(shared_data: Path,
                                                                                  tmp_path: Path) -> None:
    """A laughing driver (ST-happyenglish) brings a GRID speaker's upper lids far down: the warp drew
    his lashes out over his eyes, a see-through, streaked band (``probes/artefacts.py``'s ``lid_streaks``: 0.70 at
    those frames). Now his own lids from his blinks are put there, as streaked as his own closed lids are (his six
    most closed frames: 0.58; his open ones 0.33-0.45)."""
    sys.path.insert(0, str(PROBES))
    from artefacts import lid_streaks

    source = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    out = tmp_path / "laugh.mp4"
    result = run_cli("transfer", source, shared_data / "train" / "edtalk" / "expression_source.mp4", "-o", out)
    assert result.returncode == 0, result.stderr
    with VideoReader(source) as reader:
        sources = [frame.image for frame in reader]
    with VideoReader(out) as reader:
        frames = [frame.image for frame in reader]
    with FaceTracker(video_mode=False) as tracker:
        def streaks(image: np.ndarray) -> tuple[float, float]:
            found = tracker(image, 0.0)
            assert found is not None
            return lid_streaks(image, found.xy), opening(found.xy[:, :2], 0) + opening(found.xy[:, :2], 1)

        own = sorted((streaks(image) for image in sources), key=lambda row: row[1])[:6]  # his most closed frames
        made = [streaks(frames[i])[0] for i in (15, 16, 17, 24, 25, 26)]  # the driver's squints and a blink
    assert np.mean(made) < np.mean([row[0] for row in own]) + 0.05 < 0.7


def test_a_remembered_mouth_on_a_turned_head_keeps_to_the_face_and_its_colour(shared_data: Path,
                                                                             tmp_path: Path) -> None:
    """A three-quarter face (`PC-MattDamon`) driven by `ST-furious`, whose lips press shut: the memory put in the
    speaker's own closed mouth, lips grown, whose box reached past the cheek's edge. It brought its own frame's
    background onto the cheek (a blue-grey smear) and took its colour match from the background there (orange lips:
    ``lip_tint`` 1.09-1.13 times the source's). Now the blend and its colour ring keep inside both faces."""
    sys.path.insert(0, str(PROBES))
    from artefacts import lip_tint

    source = shared_data / "train" / "talking-face_pc-avs" / "00010.mp4"
    out = tmp_path / "furious.mp4"
    result = run_cli("transfer", source, shared_data / "train" / "styletalk" / "furious_talk2_clip1.mp4", "-o", out)
    assert result.returncode == 0, result.stderr
    with VideoReader(source) as reader:
        sources = [frame.image for frame in reader][:8]
    with VideoReader(out) as reader:
        outputs = [frame.image for frame in reader][:8]
    tints = []
    with FaceTracker(video_mode=False) as tracker:
        for i in (2, 3, 4, 5):  # the driver's lips pressed: the speaker's own closed mouth is put in
            before, after = tracker(sources[i], 0.0), tracker(outputs[i], 0.0)
            assert before is not None and after is not None
            tints.append(lip_tint(outputs[i], after.xy) / lip_tint(sources[i], before.xy))
    assert max(tints) < 1.04, tints


def test_a_remembered_inner_mouth_takes_the_frames_light_not_its_lips_red() -> None:
    """An inner mouth's colour ring is its lips, whose red changes as they stretch: matched channel by channel, a
    bearded held-out speaker's remembered teeth turned olive (red x0.92, green x1.08). Matched in light alone, grey
    teeth stay grey; an eye's ring (skin) still matches each channel."""
    from reenact.memory import _colour_matched

    mask = np.zeros((40, 40), np.float32)
    mask[12:28, 12:28] = 1.0
    inside = mask[..., None] > 0
    layer = np.where(inside, np.float32(150.0), np.array((200.0, 150.0, 150.0), np.float32))  # grey teeth, red lips
    image = np.where(inside, np.float32(90.0), np.array((170.0, 140.0, 140.0), np.float32))  # the frame's lips paler
    face = np.ones_like(mask)
    grey = _colour_matched(layer, image, mask, face, grey=True)[20, 20]
    assert np.ptp(grey) < 1e-3  # the teeth stay grey
    each = _colour_matched(layer, image, mask, face)[20, 20]
    assert each[1] - each[0] > 5  # channel by channel: greener than red
