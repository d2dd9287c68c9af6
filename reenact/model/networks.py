"""The generator: a motion step that warps the face, then a texture step for what warping cannot make.

Motion: from the source face's landmarks (in the aligned crop), its AUs and the target AUs (and, optionally, a
change of head pose), a network predicts a dense backward flow at low resolution (``flow_size``); the flow is
upsampled and applied to the crop at whatever resolution it has, so a large face keeps its detail. The flow is the
difference of the field for the target and the field for the source's own AUs, so an empty edit is exactly no
motion. Across the eyes and the mouth, the flow's vertical part is remapped column by column so that lids and lips
can meet (``close_gaps``): a smooth field cannot close a gap.

Texture: on the warped face (at ``texture_size``) and the AU change, a small U-Net outputs an RGB residual and an
attention mask; the residual is added where the mask says, scaled by how large the edit is (none for no edit).

Flow convention: ``out(x) = source(x + flow(x))`` in grid_sample's normalised coordinates ([-1, 1] spans the crop,
pixel centres at ``(i + 0.5) / S * 2 - 1``).
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reenact.face.aus import AU_NAMES
from reenact.face.regions import FACE_SIDES, region_mask
from reenact.model.coords import denormalise, normalise
from reenact.model.paint import paint_closed_lids, paint_mouth_interior

AU_SCALE = 5.0  # AU intensities (0-5) enter the networks divided by this
POSE_SCALE = 20.0  # head-pose changes (degrees) enter the motion divided by this
MAX_POSE_CHANGE = 30.0  # degrees; a linear field means nothing for larger turns, so changes are clipped here


def pose_features(pose_change):
    """Head-pose changes in degrees (numpy or torch, (..., 3)) as the motion takes them: clipped, then scaled."""
    return pose_change.clip(-MAX_POSE_CHANGE, MAX_POSE_CHANGE) / POSE_SCALE


@dataclass(frozen=True)
class GeneratorConfig:
    """Every size that defines a generator; stored as JSON beside its weights."""

    n_aus: int = 17
    n_landmarks: int = 478
    flow_size: int = 64
    texture_size: int = 128
    motion_width: int = 512
    motion_channels: int = 48  # unused since per-landmark motion; kept so older configs still load
    flow_sigma: float = 0.04  # spread of each landmark's motion in the dense flow, normalised units
    texture_channels: int = 32
    max_flow: float = 0.35
    n_pose: int = 0  # 3: the motion also takes a head-pose change (pitch, yaw, roll); 0 in models without it
    flow_fit_iters: int = 0  # corrections that make the dense flow pass through the landmarks' moves (0: plain)
    close_gaps: bool = False  # lids and lips may meet: the flow across each eye and the mouth is remapped by column
    # The resolution the gaps are remapped at (None: flow_size); the smooth field is splatted at flow_size and
    # upsampled to it. A narrow eye's lids are a few pixels apart in a 256 px crop, and a flow at half that
    # resolution cannot bring them together (``probes/transfer_chain.py``, the ``flow`` row).
    gap_size: int | None = None
    # Per AU, a factor on a change that is asked for (an edit or a preset, not a reading of a driving face) before
    # the motion step moves toward it. The fields are least-squares fits on noisy AU readings, so they carry the
    # motion that goes with a *read* change of one unit, which is less than what goes with an exact one; fitted so
    # that reenact's reader sees the asked-for change on training people (``reenact train --phase gain``).
    edit_gain: list[float] | None = None
    # Per AU, the highest target a gained edit may ask of the motion (None: 5, the top of the AU scale, for each).
    # A field fitted on readings moves less at a reading of 5 than faces read that high did, so where training
    # frames were read near the top, the ceiling is the reading at which the field reaches their motion
    # (``reenact.train.gain.fit_edit_ceiling``): a jaw drop may open as far as the data's widest, no further.
    edit_ceiling: list[float] | None = None
    # What a warp cannot show (``reenact.model.paint``; with ``close_gaps`` only): a mouth opened wider than the
    # source's keeps what it showed at its size (no stretched teeth) and gets an interior where the source showed
    # none; a closed eye gets a lid and a lash line instead of the squeezed eye.
    mouth_interior: bool = False
    closed_lids: bool = False
    # A factor on the texture step's mask. A texture step trained against a realism term can overshoot on people it
    # never saw: chosen where self-reenactment of held-out people peaks (``reenact eval --texture-strength``).
    texture_strength: float = 1.0
    # The texture step paints only inside the FACS regions of the AUs that change (``reenact.face.regions``): trained
    # on whole faces, it drew a lip-red crescent on the chin for cheek and brow edits on people it never saw.
    texture_regions: bool = False

    @property
    def field_size(self) -> int:
        """The size of the motion's dense flow (``MotionNet.field``)."""
        return self.gap_size if self.close_gaps and self.gap_size else self.flow_size

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        return cls(**json.loads(text))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


class MotionNet(nn.Module):
    """(landmarks, source AUs, target AUs[, head-pose change]) -> backward flow (B, 2, flow_size, flow_size).

    Motion is predicted per landmark, so it follows this face's own features (a dense field in crop space would
    put a lip's motion wherever an average lip is): a learned displacement per AU and landmark, weighted by how
    much the AU changes (what a linear model of the data explains; exactly zero for no change), plus a network
    that corrects it for this face's shape and the AUs' starting intensities. The displacements are then spread
    into a smooth dense flow around where the landmarks land (Gaussian-weighted, fading to zero away from the face).
    A model with ``n_pose`` 3 also has a displacement per degree of head pitch, yaw and roll: the 2-D image of a
    small head turn, which is what a driving clip's head motion looks like in the aligned crop.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        n = config.n_landmarks
        self.basis = nn.Parameter(torch.zeros(config.n_aus, n, 2))
        if config.n_pose:
            self.pose_basis = nn.Parameter(torch.zeros(config.n_pose, n, 2))
        self.correct = nn.Sequential(
            nn.Linear(n * 2 + 2 * config.n_aus, config.motion_width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.motion_width, config.motion_width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.motion_width, n * 2),
        )
        # Start as the pure per-AU model; the correction grows only where the data asks for it.
        nn.init.zeros_(self.correct[-1].weight)
        nn.init.zeros_(self.correct[-1].bias)

    def displacements(self, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
                      pose_change: torch.Tensor | None = None, asked: bool = False) -> torch.Tensor:
        """Per landmark, where its content comes from relative to where it lands: (B, N, 2), normalised units.
        ``pose_change``: (B, 3) degrees of pitch, yaw and roll to add to the head's (models with ``n_pose``).
        ``asked``: the target is asked for, not read from a face, so the change is scaled by ``edit_gain``."""
        if asked and self.config.edit_gain is not None:
            # Within the range the data showed (0 to each AU's ceiling): a linear field is not extrapolated past it.
            gain = target_aus.new_tensor(self.config.edit_gain)
            ceiling = target_aus.new_tensor(self.config.edit_ceiling or [AU_SCALE] * target_aus.shape[-1])
            target_aus = torch.minimum(source_aus + (target_aus - source_aus) * gain, ceiling).clamp(min=0.0)
        n = landmarks.shape[0]
        x = torch.cat([
            torch.cat([landmarks, landmarks]).flatten(1),
            torch.cat([source_aus, source_aus]) / AU_SCALE,
            torch.cat([target_aus, source_aus]) / AU_SCALE,
        ], dim=1)
        both = self.correct(x).view(2 * n, -1, 2)
        linear = torch.einsum("bk,knc->bnc", (target_aus - source_aus) / AU_SCALE, self.basis)
        # The correction's two halves cancel exactly when target == source.
        moves = (linear + both[:n] - both[n:]).index_fill(1, self._sides(linear.device), 0.0)
        if pose_change is not None:
            if not self.config.n_pose:
                raise ValueError("this model has no head-pose motion (its config's n_pose is 0)")
            moves = moves + torch.einsum("bk,knc->bnc", pose_features(pose_change), self.pose_basis)
        return moves

    @staticmethod
    def _sides(device: torch.device) -> torch.Tensor:
        """The face outline's sides (``FACE_SIDES``), which no expression moves; a head turn does."""
        return torch.tensor(FACE_SIDES, device=device)

    def forward(
        self, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
        pose_change: torch.Tensor | None = None, asked: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense flow, per-landmark moves). A landmark at p lands at p - move, and the flow there is the move."""
        moves = self.displacements(landmarks, source_aus, target_aus, pose_change, asked)
        return self.field(landmarks, moves), moves

    def field(self, landmarks: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        """The dense backward flow (B, 2, field_size, field_size) that carries each landmark by its move (B, N, 2):
        the motion's own moves, or any others (a driving face's, retargeted: ``reenact.retarget``)."""
        points, sigma = landmarks - moves, self.config.flow_sigma
        values = fit_through(points, moves, sigma, self.config.flow_fit_iters)
        flow = splat(points, values, self.config.flow_size, sigma)
        if self.config.field_size != self.config.flow_size:
            size = (self.config.field_size,) * 2
            flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
        if self.config.close_gaps:
            flow = close_gaps(flow, points, moves, rigid_mouth=self.config.mouth_interior)
        return flow


def splat(points: torch.Tensor, values: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """A smooth (B, C, size, size) field through ``values`` (B, N, C) at ``points`` (B, N, 2, normalised):
    Gaussian-weighted means, with a small constant weight on zero so the field fades out beyond ~3 sigma."""
    # A 2-D Gaussian is the product of two 1-D ones, so the (size², N) weight matrix is never formed: with
    # gx[x, n] and gy[y, n] the per-axis weights, sum_n gy[y, n] gx[x, n] v[n] is one (size, N) @ (N, size)
    # product per channel, and the weights' sum is the same product with v = 1. Exact, and ~size/2 times fewer exps.
    # Exponents are held above -80: a weight of e^-80 against the e^-4.5 floor is nothing in float32, and far
    # smaller ones would be subnormal numbers, which are many times slower to compute with.
    b, c = points.shape[0], values.shape[-1]
    axis = normalise(torch.arange(size, device=points.device, dtype=points.dtype), size)
    d2 = (axis[:, None] - points.transpose(1, 2)[:, :, None, :]).square()  # (B, 2, size, N): x, then y
    g = torch.exp((d2 / (-2 * sigma * sigma)).clamp(min=-80.0))
    gx, gy = g[:, 0], g[:, 1]
    with_ones = torch.cat([values, values.new_ones(b, values.shape[1], 1)], dim=-1)  # (B, N, C + 1)
    sums = (gy[:, None] * with_ones.transpose(1, 2)[:, :, None, :]) @ gx.transpose(1, 2)[:, None]  # (B, C+1, y, x)
    return sums[:, :c] / (sums[:, c:] + math.exp(-4.5))


def fit_through(points: torch.Tensor, moves: torch.Tensor, sigma: float, iters: int) -> torch.Tensor:
    """Values to splat so the field at each point is (nearly) that point's move.

    ``splat`` is a local mean, so where neighbouring landmarks move differently (an eyelid over the eye, lip over
    lip) the field at each one is only part of its move: an edit came out weaker than the motion asked. Each
    iteration adds what is still missing at the points, with the field evaluated at the points themselves (exactly,
    not on splat's grid). Measured on 256 validation pairs: 5 iterations bring true landmark moves from 0.27 to
    0.14 px of error at 128 px, and the default model's AU12 response from 56% to 64% of the request.
    """
    if iters <= 0:
        return moves
    x, y = points[..., 0], points[..., 1]
    d2 = (x[:, :, None] - x[:, None]).square() + (y[:, :, None] - y[:, None]).square()  # (B, N, N), per axis: fast
    weights = torch.exp((d2 / (-2 * sigma * sigma)).clamp(min=-80.0))  # symmetric
    scale = 1 / (weights.sum(-1) + math.exp(-4.5))  # splat's local mean: each row's weights sum to about 1
    # Channels first, (B, 2, N) @ (B, N, N): the same products as weights @ values (the weights are symmetric),
    # ~6x faster on a CPU than a matrix times a 2-column one.
    target = moves.transpose(1, 2)
    values = target
    for _ in range(iters):
        values = values + (target - (values @ weights) * scale[:, None])
    return values.transpose(1, 2)


# Each gap the face can open and close, as four MediaPipe contours ordered across the face, top to bottom: the skin
# above, the gap's upper edge, its lower edge, the skin below (eyes: a ring around the lids, and the lids; mouth:
# the outer and inner lip lines).
GAP_CONTOURS: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((130, 247, 30, 29, 27, 28, 56, 190, 243), (33, 246, 161, 160, 159, 158, 157, 173, 133),
     (33, 7, 163, 144, 145, 153, 154, 155, 133), (130, 25, 110, 24, 23, 22, 26, 112, 243)),  # the subject's right eye
    ((359, 467, 260, 259, 257, 258, 286, 414, 463), (263, 466, 388, 387, 386, 385, 384, 398, 362),
     (263, 249, 390, 373, 374, 380, 381, 382, 362), (359, 255, 339, 254, 253, 252, 256, 341, 463)),  # left eye
    ((61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291), (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
     (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308), (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)),  # mouth
)  # fmt: skip


def _contour_index() -> torch.Tensor:
    """GAP_CONTOURS as one (gaps, 4, points) index, shorter contours padded with their last point (a segment of
    no length, which reading along the contour skips)."""
    n = max(len(c) for gap in GAP_CONTOURS for c in gap)
    return torch.tensor([[list(c) + [c[-1]] * (n - len(c)) for c in gap] for gap in GAP_CONTOURS])


_CONTOURS = _contour_index()


def _along_contours(xs: torch.Tensor, contour_x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``values`` (M, V, n) along contours with points at ``contour_x`` (M, n), read at the
    columns ``xs`` (W,) or, each contour its own, (M, W): (M, V, W), held at the ends."""
    cx, order = contour_x.sort(dim=1)
    values = values.gather(2, order[:, None].expand_as(values))
    hi = torch.searchsorted(cx, xs.expand(cx.shape[0], -1).contiguous()).clamp(1, cx.shape[1] - 1)
    lo = hi - 1
    x0, x1 = cx.gather(1, lo), cx.gather(1, hi)
    t = ((xs - x0) / (x1 - x0).clamp(min=1e-6)).clamp(0, 1)[:, None]
    ends = [values.gather(2, i[:, None].expand(-1, values.shape[1], -1)) for i in (lo, hi)]
    return ends[0] * (1 - t) + ends[1] * t


def _skin_band(y: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor,
               ) -> torch.Tensor:
    """Source y for output rows ``y`` of a skin band whose ends y0 -> s0, y1 -> s1: a monotone cubic with the
    skin's own scale (slope 1) at both ends, so the stretch goes to the band's middle and the lid's or lip's edge
    keeps its thickness (a straight line would stretch a lash line with the skin). Identity for an unmoved band."""
    span = y1 - y0
    u = ((y - y0) / span).clamp(0, 1)
    slope = (3 * (s1 - s0) / span).clamp(max=1.0) * span  # ends at slope 1, less where that would fold the band
    u2 = u * u
    u3 = u2 * u
    return (2 * u3 - 3 * u2 + 1) * s0 + (u3 - 2 * u2 + u) * slope + (3 * u2 - 2 * u3) * s1 + (u3 - u2) * slope


def gap_ends(points: torch.Tensor, gaps: slice = slice(None)) -> torch.Tensor:
    """Each gap's left and right ends (B, gaps, 2): the extremes of its upper edge, where its landmarks land."""
    edge_x = points[:, _CONTOURS[gaps, 1].to(points.device), 0]  # (B, gaps, n)
    return torch.stack([edge_x.amin(dim=2), edge_x.amax(dim=2)], dim=2)


def gap_columns(axis: torch.Tensor, points: torch.Tensor, moves: torch.Tensor, gaps: slice = slice(None),
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each gap's four knots (skin above, upper edge, lower edge, skin below) read at the columns ``axis`` (W,), or
    each gap at its own (gaps, W): where they land and where their content comes from, each (B, gaps, 4, W); and
    the gap's left and right ends (B, gaps, 2). Edges asked to pass each other land where they meet, halfway."""
    index = _CONTOURS[gaps].to(points.device)
    b, g, n = points.shape[0], index.shape[0], index.shape[-1]
    at = points[:, index]  # (B, gaps, 4, n, 2): where each contour point lands
    heights = (at[..., 1], (at + moves[:, index])[..., 1])  # its y, and the y its content comes from
    columns = axis if axis.dim() == 1 else axis[None, :, None].expand(b, -1, 4, -1).reshape(b * g * 4, -1)
    read = _along_contours(columns, at[..., 0].reshape(-1, n), torch.stack(heights, 3).reshape(-1, 2, n))
    knots, sources = read.reshape(b, g, 4, 2, -1).unbind(3)
    top_y, up_y, low_y, bottom_y = knots.unbind(2)
    crossed = up_y > low_y  # the motion asks the edges to pass each other: they meet halfway
    meet = (up_y + low_y) / 2
    up_y, low_y = torch.where(crossed, meet, up_y), torch.where(crossed, meet, low_y)
    top_y, bottom_y = torch.minimum(top_y, up_y - 1e-4), torch.maximum(bottom_y, low_y + 1e-4)
    return torch.stack([top_y, up_y, low_y, bottom_y], 2), sources, gap_ends(points, gaps)


MOUTH = len(GAP_CONTOURS) - 1  # the mouth is the last gap


def close_gaps(flow: torch.Tensor, points: torch.Tensor, moves: torch.Tensor, rigid_mouth: bool = False,
               ) -> torch.Tensor:
    """The flow with each eye's and the mouth's vertical motion remapped so that lids and lips can meet.

    A smooth field cannot close a gap: where an upper lid lands on the lower one, two landmarks at one place ask for
    different moves, and the field takes their mean, so a blink came out as a squint (AU45 read 4% of a request).
    Here, per column across the gap, the vertical source position runs through four knots (skin above, upper
    edge, lower edge, skin below), each where the landmarks put it: between the edges the gap's content is
    squeezed (or stretched) evenly, above and below the skin follows (``_skin_band``); edges asked to pass each
    other meet halfway. At the outer knots the field is kept, so the remapped band joins it without a seam; it
    fades out towards the corners, where the edges meet anyway. Only samples with some motion change, so no motion
    stays exactly no flow. All gaps are done at once, each over the grid rows its band spans and the columns between
    its ends only.

    ``rigid_mouth``: a mouth that opens wider than the source's does not stretch what it shows (teeth came out
    tall): the upper half of its content moves with the upper lip, the lower half with the lower lip, and the
    middle, which the source never showed, is left to ``paint_mouth_interior``.
    """
    b, _, h, w = flow.shape
    axis = normalise(torch.arange(w, device=flow.device, dtype=flow.dtype), w)
    # Only the grid columns between each gap's ends are worked on (the fade below is nothing past them): a window
    # of columns per gap, as wide as the widest (the mouth's). At a 256² grid, a third of the work of every column.
    ends = gap_ends(points)  # (B, gaps, 2)
    first = denormalise(ends[..., 0].amin(dim=0), w).floor().long().clamp(0, w - 1)  # (gaps,)
    last = denormalise(ends[..., 1].amax(dim=0), w).ceil().long().clamp(0, w - 1)
    cols = first[:, None] + torch.arange(int((last - first).max()) + 1, device=flow.device)  # (gaps, C)
    inside_cols = cols < w
    cols = cols.clamp(max=w - 1)
    x = axis[cols]  # (gaps, C): those columns' x
    knots, sources, _ = gap_columns(x, points, moves)
    top_y, up_y, low_y, bottom_y = knots.unbind(2)
    fy = flow[:, 1]

    def field_at(y: torch.Tensor) -> torch.Tensor:  # the field's own source y at (each column, y): (B, gaps, C)
        points = torch.stack([x.expand_as(y), y], dim=-1).reshape(b, -1, 2)
        return y + sample_at(flow[:, 1:], points).reshape(y.shape)

    tk, uk, lk, bk = (k[:, :, None] for k in (top_y, up_y, low_y, bottom_y))  # (B, gaps, 1, W)
    ts, us, ls, bs = (k[:, :, None] for k in (field_at(top_y), sources[:, :, 1], sources[:, :, 2], field_at(bottom_y)))
    # Only the grid rows each gap's band spans are worked on: a window of rows per gap, as tall as the tallest.
    first = denormalise(top_y.amin(dim=(0, 2)), h).floor().long().clamp(0, h - 1)  # (gaps,)
    last = denormalise(bottom_y.amax(dim=(0, 2)), h).ceil().long().clamp(0, h - 1)
    rows = first[:, None] + torch.arange(int((last - first).max()) + 1, device=flow.device)  # (gaps, L)
    inside_grid = rows < h
    rows = rows.clamp(max=h - 1)
    y = axis[rows][None, :, :, None]  # (1, gaps, L, 1): those rows' y
    window = fy[:, rows[:, :, None], cols[:, None, :]]  # (B, gaps, L, C)
    above = _skin_band(y, tk, uk, ts, us)
    inside = us + (y - uk) * (ls - us) / (lk - uk).clamp(min=1e-4)
    if rigid_mouth:
        half = (ls - us).clamp(min=0) / 2
        held = torch.where(y - uk < half, us + (y - uk), torch.where(lk - y < half, ls - (lk - y), us + half))
        opening = (lk - uk > ls - us) & (torch.arange(len(GAP_CONTOURS), device=flow.device) == MOUTH)[:, None, None]
        inside = torch.where(opening, held, inside)
    below = _skin_band(y, lk, bk, ls, bs)
    remapped = torch.where(y < uk, above, torch.where(y <= lk, inside, below)) - y
    # Across the gap's width: full in the middle, fading to nothing over the outer sixth on each side.
    left, right = ends[..., :1], ends[..., 1:]
    t = (x - left) / (right - left).clamp(min=1e-6)
    fade = (torch.minimum(t, 1 - t) * 6).clamp(0, 1)
    fade = (fade * fade * (3 - 2 * fade))[:, :, None]  # (B, gaps, 1, C)
    moving = (moves.abs().flatten(1).amax(dim=1) > 0).to(flow.dtype)[:, None, None, None]
    inside_window = inside_grid[:, :, None] & inside_cols[:, None, :]  # (gaps, L, C)
    weight = ((y >= tk) & (y <= bk) & inside_window[None]) * fade * moving
    change = ((remapped - window) * weight).flatten(1)  # (B, gaps * L * C)
    # Windows that overlap (the eyes', as wide as the mouth's) add nothing outside their own gap: its fade is 0.
    cells = (rows[:, :, None] * w + cols[:, None, :]).flatten()
    fy = fy.flatten(1).index_add(1, cells, change.to(fy.dtype)).view(b, h, w)
    return torch.stack([flow[:, 0], fy], dim=1)


class TextureNet(nn.Module):
    """(warped face, target AUs, AU change) -> RGB residual in [-1, 1] and attention mask in [0, 1]."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        c, n = config.texture_channels, config.n_aus
        self.enc1 = nn.Sequential(_conv(3 + 2 * n, c), _conv(c, c))
        self.enc2 = nn.Sequential(nn.AvgPool2d(2), _conv(c, 2 * c), _conv(2 * c, 2 * c))
        self.enc3 = nn.Sequential(nn.AvgPool2d(2), _conv(2 * c, 4 * c), _conv(4 * c, 4 * c))
        self.mid = nn.Sequential(nn.AvgPool2d(2), _conv(4 * c, 4 * c), _conv(4 * c, 4 * c))
        self.dec3 = nn.Sequential(_conv(8 * c, 4 * c), _conv(4 * c, 2 * c))
        self.dec2 = nn.Sequential(_conv(4 * c, 2 * c), _conv(2 * c, c))
        self.dec1 = nn.Sequential(_conv(2 * c, c), nn.Conv2d(c, 4, 3, padding=1))

    def forward(self, warped: torch.Tensor, target_aus: torch.Tensor, source_aus: torch.Tensor):
        b, _, h, w = warped.shape
        aus = torch.cat([target_aus, target_aus - source_aus], dim=1) / AU_SCALE
        # The first layer sees the image and the AUs, each AU as a constant plane. A plane's share of the convolution
        # is the same for every plane but for its AU's factor, so the AUs' share is one kernel per image (their
        # AU-weighted sum) run over a plane of ones, zero-padded like the image: the same sum as convolving all
        # 3 + 2 * n_aus channels, for the work of 4 (one convolution, grouped by image as the kernels differ).
        conv, act = self.enc1[0]
        planes = torch.cat([warped * 2 - 1, warped.new_ones(b, 1, h, w)], dim=1).reshape(1, b * 4, h, w)
        au_kernels = torch.einsum("bk,okyx->boyx", aus, conv.weight[:, 3:])[:, :, None]
        kernels = torch.cat([conv.weight[None, :, :3].expand(b, -1, -1, -1, -1), au_kernels], dim=2)
        first = F.conv2d(planes, kernels.flatten(0, 1), conv.bias.repeat(b), padding=conv.padding, groups=b)
        e1 = self.enc1[1:](act(first.reshape(b, -1, h, w)))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        m = F.interpolate(self.mid(e3), scale_factor=2, mode="bilinear", align_corners=False)
        d3 = F.interpolate(self.dec3(torch.cat([m, e3], 1)), scale_factor=2, mode="bilinear", align_corners=False)
        d2 = F.interpolate(self.dec2(torch.cat([d3, e2], 1)), scale_factor=2, mode="bilinear", align_corners=False)
        out = self.dec1(torch.cat([d2, e1], 1)).contiguous()  # NCHW: each channel in one piece for tanh and sigmoid
        return torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])


def sample_at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Values of a (B, C, h, w) field at (B, N, 2) normalised points: (B, N, C)."""
    return F.grid_sample(field, points[:, :, None, :], mode="bilinear", align_corners=False).squeeze(-1).transpose(1, 2)


def identity_grid(size: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """grid_sample's sampling grid that returns the input unchanged: (batch, size, size, 2), x then y."""
    axis = normalise(torch.arange(size, device=device, dtype=dtype), size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], dim=-1).expand(batch, size, size, 2)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) in [0, 1] by ``flow`` (B, 2, h, w), upsampled to the image's size.

    Bicubic, clamped to [0, 1] (its overshoot at hard edges): the warp moves nearly every face pixel by a fraction of
    a pixel, and bilinear sampling there blurs the finest detail (a 138-pixel face made happy kept 0.71 of its
    sharpness bilinear, 0.88 bicubic; ``probes/sharpness.py``)."""
    b, _, h, w = image.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    grid = identity_grid(h, b, image.device, image.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp(0, 1)


REGION_SIGMA = 0.06  # how far (normalised units) a region's weight spreads from its landmarks into the texture gate
CHANGED = 0.05  # an AU changed by less than this is not edited: its region gets no texture
# The brows are left to the warp: on held-out faces the texture step laid a grey, flat cast over raised brows and
# upper lids (seen on a GRID speaker and a bearded validation face under surprised; the warp alone looked natural).
UNTEXTURED_AUS = ("AU01", "AU02", "AU04")
_UNTEXTURED = [AU_NAMES.index(name) for name in UNTEXTURED_AUS]


def texture_gate(landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor, size: int,
                 ) -> torch.Tensor:
    """(B, 1, size, size) in [0, 1]: 1 inside the regions of the AUs that change, falling to 0 outside them (a
    smooth field through 1 at those regions' landmarks and 0 at the others')."""
    changed = ((target_aus - source_aus).abs() >= CHANGED).cpu().numpy()
    changed[:, _UNTEXTURED] = False
    points = landmarks.detach().cpu().numpy()
    weights = [region_mask(p)[c].any(axis=0) if c.any() else np.zeros(len(p), bool) for p, c in zip(points, changed)]
    values = torch.from_numpy(np.stack(weights)).to(landmarks)[..., None]
    field = splat(landmarks, values, size, REGION_SIGMA)
    near = splat(landmarks, torch.ones_like(values), size, REGION_SIGMA)  # 1 on the face, fading past its edge
    return (field / near.clamp(min=1e-3) * 1.25 - 0.125).clamp(0, 1) * near.clamp(0, 1)


def edit_strength(source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
    """0 for no AU change, rising to 1 for a change of about one intensity step: gates the texture step."""
    return torch.tanh((target_aus - source_aus).abs().sum(dim=1) * 1.5)[:, None, None, None]


class Generator(nn.Module):
    """Warp, then texture. Images are (B, 3, H, W) floats in [0, 1]; H = W, any size."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        self.motion = MotionNet(config)
        self.texture = TextureNet(config)
        # The dtype the texture step runs in at inference (``reenact.devices.texture_dtype``); None: float32. Only the
        # texture step: the motion's splats and fits need float32 (exponentials of small distances, summed).
        self.texture_dtype: torch.dtype | None = None

    def reconfigure(self, **changes) -> None:
        """Change fields of the config in place (e.g. ``edit_gain``); the motion step holds the same config."""
        self.config = self.motion.config = replace(self.config, **changes)

    def with_head_pose(self, flow_fit_iters: int = 5) -> Generator:
        """This generator with head-pose motion (zero until fitted) and a flow that passes through the landmarks'
        moves: what ``reenact train --phase basis`` fits. The model itself is unchanged (a copy)."""
        config = replace(self.config, n_pose=3, flow_fit_iters=flow_fit_iters)
        model = Generator(config).to(self.motion.basis.device)
        model.load_state_dict(self.state_dict(), strict=False)  # every weight but the new pose basis
        return model

    @property
    def paints(self) -> bool:
        """Whether ``paint`` does anything: it paints into the gaps as ``close_gaps`` remaps them, so it needs it."""
        return self.config.close_gaps and (self.config.mouth_interior or self.config.closed_lids)

    def paint(self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, moves: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image``, the warped (and textured) ``crop``, with what the warp cannot show painted where the moves
        open the mouth or close an eye (``reenact.model.paint``; as the config asks); and how much of each pixel is
        paint (B, 1, H, W)."""
        w = image.shape[-1]
        axis = normalise(torch.arange(w, device=image.device, dtype=moves.dtype), w)
        knots, sources, ends = gap_columns(axis, landmarks - moves, moves)  # (B, gaps, 4, W), ..., (B, gaps, 2)
        painted = image.new_zeros(image.shape[0], 1, *image.shape[2:])
        if self.config.closed_lids:
            eyes = slice(0, MOUTH)
            source_gap = sources[:, eyes, 2] - sources[:, eyes, 1]
            gap = knots[:, eyes, 2] - knots[:, eyes, 1]
            pixel = 2.0 / w  # an eye the source shows shut (a gap under a pixel) has nothing to close
            closed = torch.where(source_gap > pixel, 1 - gap / source_gap.clamp(min=pixel), torch.zeros_like(gap))
            # How far the upper lid has come down, as a share of the eye's opening: the warp draws a lid brought far
            # down as its lashes and crease drawn out over the eye (a streaked, see-through band).
            lowered = (knots[:, eyes, 1] - sources[:, eyes, 1]) / source_gap.clamp(min=pixel)
            lowered = torch.where(source_gap > pixel, lowered, torch.zeros_like(lowered))
            rings = knots[:, eyes, 0], knots[:, eyes, 1], knots[:, eyes, 2], knots[:, eyes, 3]  # above, lids, below
            image, lids = paint_closed_lids(image, *rings, closed.clamp(0, 1), lowered, ends[:, eyes])
            painted = painted + lids  # the eyes and the mouth never share a pixel
        if self.config.mouth_interior:
            held = (sources[:, MOUTH, 2] - sources[:, MOUTH, 1]).clamp(min=0) / 2
            image, mouth = paint_mouth_interior(image, crop, landmarks, knots[:, MOUTH, 1], knots[:, MOUTH, 2], held,
                                                ends[:, MOUTH])
            painted = painted + mouth
        return image, painted

    def forward(
        self, crop: torch.Tensor | None, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
        flow: torch.Tensor | None = None, pose_change: torch.Tensor | None = None, asked: bool = False,
        moves: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``landmarks``: (B, 478, 2) in normalised crop coordinates. ``flow``: a precomputed (e.g. time-smoothed)
        flow to use instead of the motion net's own, with ``moves``, the landmarks' moves that made it (smoothed
        alike; without them a precomputed flow gets nothing painted). ``pose_change``: (B, 3) degrees of head
        pitch, yaw and roll to follow (models with ``n_pose``). ``asked``: the target AUs are an edit, not a face's
        reading (the motion scales the change by ``edit_gain``; the texture step sees the target as given).
        ``crop=None`` predicts the landmarks' moves only."""
        if crop is None:
            return {"moves": self.motion.displacements(landmarks, source_aus, target_aus, pose_change, asked)}
        if flow is None:
            flow, moves = self.motion(landmarks, source_aus, target_aus, pose_change, asked)
        warped = warp(crop, flow)
        size = self.config.texture_size
        small = warped if warped.shape[-1] == size else F.interpolate(warped, size=(size, size), mode="area")
        dtype = self.texture_dtype
        with nullcontext() if dtype is None else torch.autocast(small.device.type, dtype):
            residual, mask = self.texture(small, target_aus, source_aus)
        residual, mask = residual.float(), mask.float()
        mask = mask * (edit_strength(source_aus, target_aus) * self.config.texture_strength)
        if self.config.texture_regions:
            landed = landmarks if moves is None else landmarks - moves  # the texture paints on the warped face
            mask = mask * texture_gate(landed, source_aus, target_aus, size)
        if residual.shape[-1] != crop.shape[-1]:  # both in one call: each channel is resized on its own anyway
            both = torch.cat([residual, mask], 1)
            both = F.interpolate(both, size=crop.shape[-2:], mode="bilinear", align_corners=False)
            residual, mask = both[:, :3], both[:, 3:]
        out = torch.addcmul(warped, mask, residual).clamp(0, 1)
        painted = None
        if self.paints and moves is not None:
            out, painted = self.paint(out, crop, landmarks, moves)
        return {"output": out, "warped": warped, "flow": flow, "moves": moves, "mask": mask, "residual": residual,
                "painted": painted}
