"""Are edits sized like real faces, and do transfers carry the driver's whole motion? (issue 19's measures)

Nothing here is judged by reenact's own AU reader alone: landmark motion is compared with real faces' motion.

``edits``: per AU edit (+2), the landmark motion of the edit against the mean motion of real training faces
whose OpenFace-labelled AU rises by 2 from the same person's rest (a least-squares fit over every labelled frame
of the training people, all AUs and the head pose together, each person weighted equally). The edit's motion is
read two ways, side by side, on faces of the held-out people: as the motion step asks (its landmark moves), and as
MediaPipe finds it on the edit pasted back into its crop. The ratio is the edit's motion projected on the real
one, in that AU's FACS region, over the real one's size: 1 is a real face's +2. Identity: dlib's distance between
each face and its edit.

``transfers``: ``reenact transfer`` of held-out clips (a still frame and the clip itself) driven by other held-out
people's clips. Per region (brows, lids, mouth corners, lips, jaw), the output's landmark motion (MediaPipe on the
output, from the source's own) against the driver's motion retargeted to the source: the correlation over frames and
the amplitude (projection) ratio; the same read without the stabilising similarity (``raw_``: the output frame keeps
the source frame's head in place, so its landmarks are compared with the source frame's directly, through that
frame's alignment: on a warp of known motion, ``probes/transfer_chain.py``, the similarity takes a share of the
jaw's and brows' motion out of MediaPipe's reading), and that again over a 3-frame mean of both the output's motion
and the driver's (``steady_raw_``: MediaPipe's frame-to-frame jitter in the driver's reading, which no warp can carry,
pulls the ratio down as read); and the amplitude as the pixels show it (patch matching on
every fifth frame, no MediaPipe); reenact's AU reader on the output against the driver, mean correlation over the
driver's active AUs (per AU, and for still and video sources apart), and against what the transfer asks
(``au_corr_asked``: the source's own AUs, or with ``--mode absolute`` its resting ones, plus the driver's rise from
its rest: a relative transfer keeps a video source's own expressions); identity; how streaked the upper lids are
(``probes/artefacts.py``'s ``lid_streaks``, the 90th percentile over the output's frames and over the source's). With
``--mode absolute``, a video source's output motion is read from the source's rest (its own displacement from its
rest added back).

Usage:
  python probes/full_strength.py edits DATASET --split RUN/split.json [--model default] [--faces 24] [--json F]
  python probes/full_strength.py transfers --split RUN/split.json [--mode absolute] [--json F] [--frames 150]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from artefacts import brow_band_darkening, chin_redness, lid_streaks  # this folder's: run as a script from it

from reenact.face.align import stabilise
from reenact.face.aus import AU_NAMES, blendshapes_to_aus
from reenact.face.regions import region_mask
from reenact.model.coords import normalise
from reenact.model.networks import pose_features
from reenact.retarget import _BROWS, _LIDS

EDITS: dict[str, tuple[str, ...]] = {
    "AU01+AU02": ("AU01", "AU02"), "AU04": ("AU04",), "AU06": ("AU06",), "AU07": ("AU07",), "AU12": ("AU12",),
    "AU15": ("AU15",), "AU17": ("AU17",), "AU20": ("AU20",), "AU26": ("AU26",), "AU45": ("AU45",),
}  # fmt: skip
STEP = 2.0
TRANSFER_REGIONS: dict[str, tuple[int, ...]] = {
    "brows": tuple(i for side in _BROWS for i in side),
    "lids": tuple(i for eye in _LIDS for line in eye for i in line),
    "mouth corners": (61, 291, 78, 308, 62, 292),
    "lips": (0, 13, 14, 17, 37, 39, 40, 267, 269, 270, 81, 82, 311, 312, 87, 178, 317, 402, 84, 181, 314, 405),
    "jaw": (152, 148, 176, 149, 377, 400, 378, 175, 199, 200, 18),
}


def real_motion(clips, ridge: float = 1.0) -> np.ndarray:
    """(17, 478, 2): per AU, the mean landmark displacement (normalised crop units, y down) of real faces whose
    OpenFace label rises by one from the same person's rest, the other AUs and the head pose held: least squares
    over every labelled frame (``reenact.train.basis.rises_from_rest``), each person weighted equally, with no
    region confining any AU (the basis confines each to its FACS region)."""
    from reenact.train.basis import rises_from_rest

    rises = rises_from_rest(clips)
    x = np.concatenate([rises.change, pose_features(rises.pose_change)], axis=1)
    y = -rises.moves.reshape(len(x), -1)  # moves are the rest minus the frame; a displacement is the frame's move
    xw = x * rises.weight[:, None]
    coef = np.linalg.solve(x.T @ xw + ridge * np.eye(x.shape[1]), xw.T @ y)
    return coef[: len(AU_NAMES)].reshape(len(AU_NAMES), -1, 2)


def ratio_in(region: np.ndarray, motion: np.ndarray, reference: np.ndarray) -> float:
    """The motion projected on the reference over the reference's size, on the region's landmarks."""
    m, r = motion[region].ravel(), reference[region].ravel()
    return float(m @ r / (r @ r))


PRESETS = ("surprised", "angry", "happy", "sad")


def held_out_stills(split: Path, per_clip: int) -> list[np.ndarray]:
    """RGB frames of the held-out people's clips (the first, then evenly through each clip): faces of every size
    the clips have, as ``reenact edit`` gets them."""
    import av

    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    people = json.loads(split.read_text())["validation"]
    stills = []
    for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]:
        file, who = line.split(",")[:2]
        if who not in people:
            continue
        with av.open(str(data / file)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        stills += [frames[i * len(frames) // per_clip] for i in range(per_clip)]
    return stills


def patch_motion(source: np.ndarray, edited: np.ndarray, points: np.ndarray, half: int = 6, search: int = 8,
                 ) -> np.ndarray:
    """(N, 2) how far the image content around each of ``points`` (crop pixels) moved from ``source`` to
    ``edited`` ((S, S, 3) uint8): the best match of a small patch (sum of squared differences, sub-pixel by a
    parabola), which owes nothing to MediaPipe and, unlike dense optical flow, is not pulled toward the still
    surroundings. NaN where the patch is flat or too near the border."""
    import cv2

    a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (source, edited))
    out = np.full((len(points), 2), np.nan)
    size = a.shape[0]
    for n, (x, y) in enumerate(np.round(points).astype(int)):
        if min(x, y) < half + search or max(x, y) >= size - half - search:
            continue
        patch = a[y - half:y + half + 1, x - half:x + half + 1]
        if patch.std() < 2:
            continue
        cost = cv2.matchTemplate(b[y - half - search:y + half + search + 1, x - half - search:x + half + search + 1],
                                 patch, cv2.TM_SQDIFF)
        iy, ix = np.unravel_index(np.argmin(cost), cost.shape)

        def vertex(v: np.ndarray, i: int) -> float:
            if 0 < i < len(v) - 1 and v[i - 1] - 2 * v[i] + v[i + 1] > 0:
                return i + 0.5 * (v[i - 1] - v[i + 1]) / (v[i - 1] - 2 * v[i] + v[i + 1])
            return float(i)

        out[n] = (vertex(cost[iy], ix) - search, vertex(cost[:, ix], iy) - search)
    return out


def nan_ratio(region: np.ndarray, motion: np.ndarray, reference: np.ndarray) -> float:
    ok = region & ~np.isnan(motion).any(axis=1)
    return ratio_in(ok, np.nan_to_num(motion), reference)


@torch.no_grad()
def edits(args) -> dict:
    """Through ``reenact edit``'s own stages (track, align at 256, edit, paste back) on held-out stills, per
    model: the AU edits' motion against real faces' (asked, by patch matching, by MediaPipe), identity, and the
    two artefacts issue 19 names on raised brows and on the chin (``probes/artefacts.py``)."""
    import cv2

    from reenact.editing import ExpressionTarget, GeneratorEditor, parse_au_edit
    from reenact.evaluate import IdentityMeter
    from reenact.face.align import FaceAligner, crop_face, estimate_alignment
    from reenact.face.tracker import FaceTracker
    from reenact.model.io import load_generator
    from reenact.pipeline import AlignStage, EditPasteStage, TrackStage
    from reenact.train.dataset import load_dataset
    from reenact.video import Frame

    split = json.loads(args.split.read_text())
    dataset = load_dataset(args.dataset)
    reference = real_motion([c for c in dataset.clips if c.identity in split["train"]])
    stills = held_out_stills(args.split, args.per_clip)
    meter = IdentityMeter()
    size = 256
    asks = {name: ExpressionTarget(tuple(parse_au_edit(f"{a}=+{STEP}") for a in aus)) for name, aus in EDITS.items()}
    asks |= {name: ExpressionTarget(preset=name) for name in PRESETS}
    rows: dict = {}
    with FaceTracker(video_mode=False) as tracker:
        sources = []
        for image in stills:
            face = tracker(image, 0.0)
            if face is None:
                continue
            alignment = estimate_alignment(face.xy, size)
            crop = crop_face(image, alignment)
            found = tracker(crop, 0.0)
            if found is not None:
                sources.append((image, face, alignment, crop, found.xy.astype(np.float64)))
        for model_name in args.models:
            model = load_generator(model_name).eval()
            sheet = []
            for name, target in asks.items():
                aus = EDITS.get(name, ())
                ks = [AU_NAMES.index(a) for a in aus]
                figures: dict[str, list[float]] = {
                    k: [] for k in ("asked", "patch", "found", "found_raw", "identity", "band", "red")}
                tiles = []
                for image, face, alignment, crop, src_xy in sources:
                    editor = GeneratorEditor(model, target, smooth=False, threads=None)
                    frame = Frame(0, 0, Fraction(1, 25), image)
                    state = EditPasteStage(editor)(AlignStage(FaceAligner(size))(TrackStage(tracker)(frame)))
                    out_crop = crop_face(state.frame.image, alignment)
                    out = tracker(out_crop, 0.0)
                    tiles.append(np.concatenate([crop, out_crop], axis=1))
                    if out is None:
                        continue
                    out_xy = out.xy.astype(np.float64)
                    figures["identity"].append(meter.distance(crop.transpose(2, 0, 1) / 255, out_crop.transpose(2, 0, 1) / 255) or np.nan)
                    figures["band"].append(brow_band_darkening(crop, out_crop, out_xy, src_xy))
                    figures["red"].append(chin_redness(crop, out_crop, out_xy, src_xy))
                    if not ks:
                        continue
                    src = normalise(src_xy, size)
                    source_aus = blendshapes_to_aus(face.blendshapes)
                    goal = target(source_aus, 0.0)
                    moves = model(None, torch.from_numpy(src[None].astype(np.float32)),
                                  torch.from_numpy(source_aus[None]), torch.from_numpy(goal[None]),
                                  asked=True)["moves"][0].numpy()
                    ref = (reference[ks] * (goal - source_aus)[ks][:, None, None]).sum(axis=0)
                    region = region_mask(src, aus).any(axis=0)
                    figures["asked"].append(ratio_in(region, -moves, ref))
                    figures["patch"].append(nan_ratio(region, patch_motion(crop, out_crop, src_xy) / (size / 2), ref))
                    moved = stabilise(normalise(out_xy, size)[None], src)[0] - src
                    figures["found"].append(ratio_in(region, moved, ref))
                    # The same without the stabilising similarity: the edit is cut with the source's own alignment,
                    # so its landmarks and the source's are in one frame already.
                    figures["found_raw"].append(ratio_in(region, normalise(out_xy, size) - src, ref))
                row = {k: round(float(np.nanmean(v)), 3) for k, v in figures.items() if v}
                row |= {"band_max": round(float(np.nanmax(figures["band"])), 3),
                        "red_max": round(float(np.nanmax(figures["red"])), 2), "faces": len(figures["band"])}
                rows[f"{model_name} {name}"] = row
                print(model_name, name, row, flush=True)
                sheet.append(np.concatenate(tiles, axis=0))
            if args.sheet:
                args.sheet.mkdir(parents=True, exist_ok=True)
                for name, column in zip(asks, sheet):
                    label = "_".join(Path(model_name).parts[-2:])  # runs/X/model -> X_model
                    cv2.imwrite(str(args.sheet / f"{label}_{name}.png"), column[:, :, ::-1])
    return rows


def _aligned_track(path: Path, crop_size: int = 256, frame_points: list | None = None, poses: list | None = None):
    """Per frame of a video: (times, normalised aligned landmarks (or None), AUs (or None), crops (or None)), as the
    pipeline sees it. ``frame_points``: a list to append, per frame, (the landmarks in frame pixels, the alignment)
    to, or None where no face was found; ``poses``: one to append the head's pitch, yaw and roll (or None) to."""
    from reenact.face.align import FaceAligner
    from reenact.face.tracker import FaceTracker
    from reenact.pipeline import AlignStage, TrackStage, stream
    from reenact.video import VideoReader

    times, points, aus, crops = [], [], [], []
    with VideoReader(path) as reader, FaceTracker() as tracker:
        for state in stream(reader, [TrackStage(tracker), AlignStage(FaceAligner(crop_size))]):
            times.append(state.frame.time)
            found = state.face is not None and state.alignment is not None
            points.append(normalise(state.alignment.to_crop(state.face.xy), crop_size) if found else None)
            aus.append(blendshapes_to_aus(state.face.blendshapes) if found else None)
            crops.append(state.crop if found else None)
            if frame_points is not None:
                frame_points.append((state.face.xy, state.alignment) if found else None)
            if poses is not None:
                poses.append(np.array(state.face.head_pose_degrees(), np.float32) if found else None)
    return np.array(times), points, aus, crops


def _still(path: Path, out: Path) -> Path:
    """The first frame of a clip as a PNG (a still source)."""
    import av

    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    target = out / (path.stem + ".png")
    frame.to_image().save(target)
    return target


def _trim(path: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of a clip (video only), so a transfer's run is bounded."""
    from reenact.video import VideoReader, VideoWriter, probe

    target = out / (path.stem + f"_{frames}.mp4")
    with VideoReader(path) as reader, VideoWriter(target, like=probe(path), crf=12) as writer:
        for i, frame in enumerate(reader):
            if i >= frames:
                break
            writer.write(frame)
    return target


def transfers(args) -> dict:
    from reenact import api
    from reenact.evaluate import IdentityMeter
    from reenact.retarget import Retargeter

    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    split = json.loads(args.split.read_text())
    manifest = [line.split(",")[:2] for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]]
    people = {}
    for file, who in manifest:
        if who in split["validation"]:
            people.setdefault(who, data / file)  # one clip per person
    drivers = [people[p] for p in args.drivers if p in people]
    sources = [p for who, p in people.items() if who not in args.drivers][: args.sources]
    meter = IdentityMeter()
    generator = api.GeneratorOptions(model=args.model)
    model = generator.load("cpu")
    pose_basis = model.motion.pose_basis.detach().numpy().astype(np.float64)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for driver in drivers:
            short = _trim(driver, tmp, args.frames)
            track, _, _ = api.read_driving(short)
            for source in sources:
                for kind in ("still", "video"):
                    src = _still(source, tmp) if kind == "still" else _trim(source, tmp, args.frames)
                    out = tmp / f"out_{driver.stem}_{source.stem}_{kind}.mp4"
                    api.transfer_expression(src, short, out, generator=generator, motion=args.motion,
                                            relative=args.mode == "relative")
                    results.append(_score(out, src, kind, track, pose_basis, meter, Retargeter, args.mode)
                                   | {"driver": driver.stem, "source": source.stem, "kind": kind})
                    print(json.dumps(results[-1]), flush=True)
    summary = {region: {m: round(float(np.nanmean([r[region][m] for r in results])), 3)
                        for m in ("corr", "amp", "raw_corr", "raw_amp", "steady_raw_corr", "steady_raw_amp", "pixel_amp")}
               for region in TRANSFER_REGIONS}
    for key in ("au_corr", "au_corr_asked"):
        summary[key] = round(float(np.nanmean([r[key] for r in results])), 3)
        for kind in ("still", "video"):
            summary[f"{key} {kind}"] = round(float(np.nanmean([r[key] for r in results if r["kind"] == kind])), 3)
    summary["identity"] = round(float(np.nanmean([r["identity"] for r in results])), 4)
    for key in ("lid_streaks_p90", "lid_streaks_source_p90"):
        summary[key] = round(float(np.nanmean([r[key] for r in results])), 3)
    print("summary", json.dumps(summary))
    return {"summary": summary, "runs": results}


def _steady(series: np.ndarray) -> np.ndarray:
    """A centred 3-frame mean over time (axis 0; the ends as they are)."""
    out = series.copy()
    out[1:-1] = (series[:-2] + series[1:-1] + series[2:]) / 3
    return out


def _score(out: Path, src: Path, kind: str, track, pose_basis, meter, Retargeter, mode: str = "relative") -> dict:
    """One transfer's figures (see the module's docstring)."""
    from reenact.editing import DrivingTrack

    f_out, f_src, poses_src = [], [], []
    t_out, p_out, a_out, c_out = _aligned_track(out, frame_points=f_out)
    t_src, p_src, a_src, c_src = _aligned_track(src, frame_points=f_src, poses=poses_src)
    # The driver's motion as MediaPipe read it (the measure), not as the transfer carries it.
    retarget = Retargeter(track.motion(pose_basis, as_read=True))
    # An absolute transfer onto a video: the output's motion is read from the source's rest, not from its frame
    # (the source's own displacement from its rest, as read, head turns out, is added back).
    own = None
    if mode == "absolute" and kind == "video":
        own = DrivingTrack.from_rows(list(t_src), a_src, poses_src, p_src)
    own_moved = None if own is None else own.motion(pose_basis, as_read=True).displacement
    wanted, got, raw, pixels, read, drove, asked, apart = [], [], [], [], [], [], [], []
    for i, t in enumerate(t_out):
        j = 0 if kind == "still" else min(i, len(p_src) - 1)
        if p_out[i] is None or p_src[j] is None:
            continue
        wanted.append(-retarget(p_src[j], t))
        from_rest = 0.0 if own_moved is None else own_moved[j]
        got.append(stabilise(p_out[i][None].astype(np.float64), p_src[j].astype(np.float64))[0] - p_src[j]
                   + from_rest)
        # The same without the stabilising similarity: the output frame keeps the source frame's head where it
        # was, so its landmarks are compared with the source's (``p_src[j]``) through the source frame's alignment.
        raw.append(normalise(f_src[j][1].to_crop(f_out[i][0]), 256) - p_src[j] + from_rest)
        if i % 5 == 0:  # what the pixels did, read without MediaPipe (every fifth frame: it is slow)
            points = (p_src[j] + 1) / 2 * 256 - 0.5
            pixels.append((wanted[-1], patch_motion(c_src[j], c_out[i], points) / 128))
        read.append(a_out[i])
        drove.append(track.at(t))
        # What the transfer asks of the reader: the source's own AUs (relative; absolute: its resting ones) plus the
        # driver's rise from its rest.
        asked.append((a_src[j] if own is None else own.rest) + track.at(t) - track.rest)
        if i % 10 == 0:
            d = meter.distance(c_src[j].transpose(2, 0, 1) / 255.0, c_out[i].transpose(2, 0, 1) / 255.0)
            if d is not None:
                apart.append(d)
    wanted, got, raw = np.array(wanted), np.array(got), np.array(raw)
    row = {}
    for region, index in TRANSFER_REGIONS.items():
        w = wanted[:, list(index)] - wanted[:, list(index)].mean(axis=0)
        g = got[:, list(index)] - got[:, list(index)].mean(axis=0)
        r = raw[:, list(index)] - raw[:, list(index)].mean(axis=0)
        pw = np.concatenate([p[0][list(index)] for p in pixels])
        pm = np.concatenate([p[1][list(index)] for p in pixels])
        ok = ~np.isnan(pm).any(axis=1)
        # MediaPipe's frame-to-frame jitter in the driver's reading is no motion, and no warp carries what it cannot
        # see; as a reference it pulls the projection ratio down. The same 3-frame mean over both shows how much of
        # that is jitter (``steady_``), beside the ratio as read.
        ws, rs = _steady(w), _steady(r)
        row[region] = {"corr": round(float(np.corrcoef(w.ravel(), g.ravel())[0, 1]), 3),
                       "steady_raw_corr": round(float(np.corrcoef(ws.ravel(), rs.ravel())[0, 1]), 3),
                       "steady_raw_amp": round(float(rs.ravel() @ ws.ravel() / (ws.ravel() @ ws.ravel())), 3),
                       "amp": round(float(g.ravel() @ w.ravel() / (w.ravel() @ w.ravel())), 3),
                       "raw_corr": round(float(np.corrcoef(w.ravel(), r.ravel())[0, 1]), 3),
                       "raw_amp": round(float(r.ravel() @ w.ravel() / (w.ravel() @ w.ravel())), 3),
                       "pixel_amp": round(float(pm[ok].ravel() @ pw[ok].ravel() / (pw[ok].ravel() @ pw[ok].ravel())), 3)}
    read, drove, asked = np.array(read), np.array(drove), np.array(asked)
    active = np.percentile(drove, 95, axis=0) - np.percentile(drove, 5, axis=0) >= 0.5
    for key, against in (("au_corr", drove), ("au_corr_asked", asked)):
        corrs = {AU_NAMES[k]: round(float(np.corrcoef(read[:, k], against[:, k])[0, 1]), 2)
                 for k in np.flatnonzero(active) if read[:, k].std() > 0}
        row[key] = round(float(np.mean(list(corrs.values()))), 3) if corrs else float("nan")
        row[key + "_per_au"] = corrs
    row["active"] = [AU_NAMES[k] for k in np.flatnonzero(active)]
    row["identity"] = round(float(np.mean(apart)), 4) if apart else float("nan")
    # How streaked the upper lids are (``probes/artefacts.py``), the output's frames against the source's own (real
    # lids), at the 90th percentile over frames: a lid the warp drew out over the eye shows in the tail.
    row["lid_streaks_p90"], row["lid_streaks_source_p90"] = (_streaks_p90(c, p) for c, p in ((c_out, p_out), (c_src, p_src)))
    return row


def _streaks_p90(crops: list, points: list) -> float:
    from reenact.model.coords import denormalise

    values = [lid_streaks(c, denormalise(p, c.shape[0])) for c, p in zip(crops, points) if p is not None]
    return round(float(np.nanpercentile(values, 90)), 3) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    e = sub.add_parser("edits")
    e.add_argument("dataset", type=Path)
    t = sub.add_parser("transfers")
    t.add_argument("--drivers", nargs="+", default=["LP-d8", "ST-happyenglish", "LP-d13"])
    t.add_argument("--sources", type=int, default=3)
    t.add_argument("--frames", type=int, default=150)
    t.add_argument("--motion", choices=("landmarks", "aus"), default="landmarks")
    t.add_argument("--mode", choices=("relative", "absolute"), default="relative")
    e.add_argument("--models", nargs="+", default=["default", "hq"])
    e.add_argument("--per-clip", type=int, default=2, help="stills per held-out clip (default 2)")
    e.add_argument("--sheet", type=Path, help="write each model's source | edit crops here, to look at")
    for p in (e, t):
        p.add_argument("--split", type=Path, required=True)
        p.add_argument("--json", type=Path)
    t.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {"edits": edits, "transfers": transfers}[args.what](args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
