"""The generator's building blocks: flow convention, empty edits, weights on disk, AU targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.editing import AUEdit, DrivingTrack, ExpressionTarget, GeneratorEditor, TransferTarget, parse_au_edit
from reenact.errors import ModelFileError
from reenact.face.align import estimate_alignment
from reenact.face.aus import AU_NAMES
from reenact.face.tracker import FaceObservation
from reenact.model.io import load_generator, save_generator
from reenact.model.networks import (
    GAP_CONTOURS, Generator, GeneratorConfig, close_gaps, fit_through, normalise, sample_at, splat, warp,
)
from reenact.model.presets import PRESETS, parse_preset
from reenact.pipeline import EditedCrop
from reenact.train.losses import landmark_motion_loss

SMALL = GeneratorConfig(motion_width=64, motion_channels=16, texture_channels=8)


def random_inputs(batch: int = 2, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    crop = torch.rand(batch, 3, size, size, generator=g)
    landmarks = torch.rand(batch, 478, 2, generator=g) * 1.2 - 0.6
    aus = torch.rand(batch, len(AU_NAMES), generator=g) * 3
    return crop, landmarks, aus


def test_an_empty_edit_changes_nothing() -> None:
    model = Generator(SMALL).eval()
    crop, landmarks, aus = random_inputs()
    with torch.no_grad():
        result = model(crop, landmarks, aus, aus.clone())
    assert torch.equal(result["flow"], torch.zeros_like(result["flow"]))
    assert torch.allclose(result["output"], crop, atol=1e-6)


def test_an_untrained_model_starts_with_no_motion() -> None:
    model = Generator(SMALL).eval()
    crop, landmarks, aus = random_inputs()
    with torch.no_grad():
        result = model(crop, landmarks, aus, aus + 1)
    assert torch.equal(result["flow"], torch.zeros_like(result["flow"]))


def test_the_default_model_moves_the_mouth_corners_for_a_smile() -> None:
    """AU12 pulls the lip corners (landmarks 61 and 291) outward and up; the texture step joins in."""
    model = load_generator()
    crop, landmarks, aus = random_inputs(batch=1)
    target = aus.clone()
    target[:, AU_NAMES.index("AU12")] += 2
    with torch.no_grad():
        result = model(crop, landmarks, aus, target)
    moves = result["moves"][0] * 64  # crop pixels at 128
    # A landmark lands at p - move: the subject's right corner (61, image left) goes left, the other right; both up.
    assert moves[61, 0] > 0.5 and moves[291, 0] < -0.5
    assert moves[61, 1] > 0.5 and moves[291, 1] > 0.5
    assert result["flow"].abs().max() > 0.005 and result["mask"].max() > 0
    assert result["output"].shape == crop.shape


def test_no_expression_moves_the_faces_sides_a_head_turn_does() -> None:
    """MediaPipe's outline points at the face's sides slide with the cheeks (happy:2 moved them 5-7 px at 256), and
    a warp through them dragged a held-out speaker's sideburn and ear into an S: an expression leaves them still,
    while the cheeks inside move; a followed head turn still moves them."""
    from reenact.face.regions import FACE_SIDES

    model = load_generator()
    _, landmarks, aus = random_inputs(batch=1)
    happy = torch.from_numpy(ExpressionTarget((), "happy", 2.0)(aus[0].numpy(), 0.0))[None]
    with torch.no_grad():
        smile = model(None, landmarks, aus, happy, asked=True)["moves"][0] * 128
        turn = model.motion.displacements(landmarks, aus, aus, torch.tensor([[0.0, 8.0, 0.0]]))[0] * 128
    sides = list(FACE_SIDES)
    assert smile[sides].abs().max() == 0.0
    assert smile[[205, 425, 50, 280]].abs().max() > 1.0  # the cheeks move
    assert turn[sides].abs().max() > 1.0


def test_flow_convention_is_backward_in_normalised_units() -> None:
    """A constant flow of +2 pixels in x shows each pixel's right neighbour's right neighbour."""
    size = 32
    image = torch.arange(size, dtype=torch.float32).repeat(size, 1)[None, None] / size  # value = x / size
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 2 * 2 / size  # 2 pixels in normalised units
    warped = warp(image, flow)
    assert torch.allclose(warped[0, 0, :, 4:20], image[0, 0, :, 6:22], atol=1e-5)
    # Half a pixel: bicubic, a ramp is read exactly in between; the warp stays inside [0, 1] at a hard edge.
    flow[:, 0] = 0.5 * 2 / size
    assert torch.allclose(warp(image, flow)[0, 0, :, 4:20], image[0, 0, :, 4:20] + 0.5 / size, atol=1e-5)
    edge = (torch.arange(size) >= size // 2).float().repeat(size, 1)[None, None]
    stepped = warp(edge, flow)
    assert stepped.min() == 0.0 and stepped.max() == 1.0 and 0 < stepped[0, 0, 0, size // 2 - 1] < 1


def test_landmark_loss_is_zero_for_the_exact_motion() -> None:
    b = torch.rand(1, 478, 2) * 1.6 - 0.8
    a = b + torch.tensor([0.1, -0.05])
    assert landmark_motion_loss(a - b, a, b) < 1e-9
    assert landmark_motion_loss(torch.zeros_like(a), a, b) > 1.0


def test_the_dense_flow_carries_each_landmark_move_and_fades_away_from_the_face() -> None:
    points = torch.tensor([[[-0.3, 0.0], [0.3, 0.0]]])
    values = torch.tensor([[[0.05, 0.0], [0.0, -0.04]]])
    field = splat(points, values, 64, 0.04)
    assert torch.allclose(sample_at(field, points), values, atol=0.005)
    assert field[0, :, 0, 0].abs().max() < 1e-4 and field[0, :, 63, 63].abs().max() < 1e-4


def test_the_dense_flow_is_the_gaussian_weighted_mean_of_the_moves() -> None:
    """splat's separable form against the plain 2-D formula, in float64."""
    _, points, _ = random_inputs(batch=2)
    values = torch.randn(2, 478, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.05
    size, sigma = 64, 0.04
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij")[::-1], dim=-1).reshape(-1, 2)  # x, y; y-major
    d2 = ((grid[None, :, None, :] - points.double()[:, None]) ** 2).sum(-1)
    weights = torch.exp(-d2 / (2 * sigma**2))
    expected = (weights @ values) / (weights.sum(-1, keepdim=True) + np.exp(-4.5))
    expected = expected.transpose(1, 2).reshape(2, 2, size, size)
    assert torch.allclose(splat(points, values.float(), size, sigma).double(), expected, atol=1e-6)


def test_the_flow_can_be_made_to_pass_through_the_landmark_moves() -> None:
    """Two rows of points a sigma apart moving oppositely (lids closing): the plain field at the points is a blend
    of both rows; fitted values bring it to the moves themselves."""
    sigma, size = 0.04, 256
    x = torch.linspace(-0.3, 0.3, 16)
    points = torch.cat([torch.stack([x, torch.full_like(x, -0.02)], 1), torch.stack([x, torch.full_like(x, 0.02)], 1)])[None]
    moves = torch.cat([torch.tensor([[0.0, -0.03]]).expand(16, 2), torch.tensor([[0.0, 0.01]]).expand(16, 2)])[None]
    assert torch.equal(fit_through(points, moves, sigma, 0), moves)

    def error(values: torch.Tensor) -> float:  # the rasterised field read back at the points
        return float((sample_at(splat(points, values, size, sigma), points) - moves).norm(dim=-1).mean())

    plain, fitted = error(moves), error(fit_through(points, moves, sigma, 5))
    assert plain > 0.01 and fitted < plain / 3


def gap_face() -> torch.Tensor:
    """478 landmarks with each gap's four contours (skin above, upper edge, lower edge, skin below) as arcs across a
    box of its own, the other landmarks in a row well below them."""
    landmarks = torch.stack([torch.linspace(-0.9, 0.9, 478), torch.full((478,), 0.9)], dim=1)
    boxes = ((-0.35, -0.1, -0.1), (0.1, 0.35, -0.1), (-0.2, 0.2, 0.35))  # x from, x to, y of the gap's middle
    for (x0, x1, middle), contours in zip(boxes, GAP_CONTOURS):
        for contour, dy in zip(contours, (-0.06, -0.025, 0.025, 0.05)):
            arc = torch.sin(torch.linspace(0, torch.pi, len(contour)))
            shape = arc if abs(dy) < 0.04 else 0.5 + 0.5 * arc  # the edges meet at the corners, the skin does not
            landmarks[list(contour)] = torch.stack([torch.linspace(x0, x1, len(contour)), middle + dy * shape], 1)
    return landmarks


def test_lids_can_close() -> None:
    """An eye (dark between the lids) whose upper lid is moved onto the lower one: a smooth field keeps the eye
    open, the gap-closing remap squeezes the dark out; with no motion the flow stays exactly zero."""
    landmarks = gap_face()
    upper, lower = list(GAP_CONTOURS[0][1]), list(GAP_CONTOURS[0][2])
    moves = torch.zeros(1, 478, 2)
    moves[0, upper, 1] = landmarks[upper, 1] - landmarks[lower, 1]  # content comes from the lid's old place above
    points = landmarks[None] - moves
    size = 128  # the image at the flow's own size (upsampled, the seam where the lids meet is a 1-cell dark line)
    axis = (torch.arange(size) + 0.5) / size * 2 - 1

    def edge(index: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.interp(axis.numpy(), landmarks[index, 0].numpy(), landmarks[index, 1].numpy()))
    y, x = axis[:, None], axis[None, :]
    eye = (y > edge(upper)) & (y < edge(lower)) & (x > landmarks[upper, 0].min()) & (x < landmarks[upper, 0].max())
    image = torch.full((1, 3, size, size), 0.8)
    image[:, :, eye] = 0.1
    flow = splat(points, fit_through(points, moves, 0.04, 5), 128, 0.04)

    def dark(flow: torch.Tensor) -> int:  # pixels of the warped image still as dark as the eye
        return int((warp(image, flow)[0, 0] < 0.45).sum())

    assert eye.sum() > 30
    assert dark(flow) > 0.75 * eye.sum()
    assert dark(close_gaps(flow, points, moves)) < 0.25 * eye.sum()
    still = torch.zeros(1, 2, 128, 128)
    assert torch.equal(close_gaps(still, landmarks[None], torch.zeros(1, 478, 2)), still)
    # Motion away from every gap leaves the field as it was.
    elsewhere = torch.zeros(1, 478, 2)
    elsewhere[0, 468:] = 0.01  # the irises, here in the row below the face
    points = landmarks[None] - elsewhere
    field = splat(points, elsewhere, 64, 0.04)
    assert torch.allclose(close_gaps(field, points, elsewhere), field, atol=1e-6)
    # A model with close_gaps set uses it.
    for closing in (False, True):
        model = Generator(GeneratorConfig(motion_width=64, texture_channels=8, flow_size=128, flow_fit_iters=5,
                                          close_gaps=closing)).eval()
        with torch.no_grad():
            model.motion.basis[8, upper, 1] = (landmarks[upper, 1] - landmarks[lower, 1]) * 5  # AU12 +1: the move
            aus = torch.zeros(1, 17)
            flow = model.motion(landmarks[None], aus, aus + torch.eye(17)[8:9])[0]
        assert (dark(flow) < 0.25 * eye.sum()) == closing
    # Under bfloat16 autocast, as training and GPU inference run, the remap gives the same field.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = model.motion(landmarks[None], aus, aus + torch.eye(17)[8:9])[0]
    assert torch.allclose(half.float(), flow, atol=0.005)


def _still_texture(config: GeneratorConfig) -> Generator:
    """A generator whose texture step adds nothing (residual 0), so its output is the warp (and the paint)."""
    model = Generator(config).eval()
    with torch.no_grad():
        model.texture.dec1[-1].weight.zero_()
        model.texture.dec1[-1].bias.zero_()
    return model


def _drop_jaw(model: Generator, landmarks: torch.Tensor, drop: float) -> None:
    """AU26 (+1) moves the mouth's lower edge and the skin below it down by ``drop`` (normalised units)."""
    lower = list(GAP_CONTOURS[-1][2]) + list(GAP_CONTOURS[-1][3])
    with torch.no_grad():
        model.motion.basis[AU_NAMES.index("AU26"), lower, 1] = -drop * 5  # content from above: the lip moves down


def test_an_opened_mouth_keeps_its_teeth_at_their_size_and_gets_an_interior() -> None:
    """A mouth showing its teeth (bright upper half, darker lower half) opened by a jaw drop: without the interior
    the teeth are stretched tall and nothing dark appears; with it, the teeth keep their height under the upper lip
    and a dark cavity fills the new middle. No motion paints nothing."""
    landmarks = gap_face()
    upper, lower = list(GAP_CONTOURS[-1][1]), list(GAP_CONTOURS[-1][2])
    landmarks[lower + list(GAP_CONTOURS[-1][3]), 1] += 0.04  # a mouth open some 11 px at 256 px
    size = 256
    axis = (torch.arange(size) + 0.5) / size * 2 - 1

    def edge(index: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.interp(axis.numpy(), landmarks[index, 0].numpy(), landmarks[index, 1].numpy()))
    y, x = axis[:, None], axis[None, :]
    middle = (edge(upper) + edge(lower)) / 2
    in_mouth = (y > edge(upper)) & (y < edge(lower)) & (x.abs() < 0.2)
    image = torch.full((1, 3, size, size), 0.7)
    image[:, :, in_mouth & (y < middle)] = 1.0  # upper teeth
    image[:, :, in_mouth & (y >= middle)] = 0.5  # lower teeth
    aus = torch.zeros(1, 17)
    opened = aus + torch.eye(17)[AU_NAMES.index("AU26"):][:1]
    column = size // 2

    def run(interior: bool, target: torch.Tensor) -> dict[str, torch.Tensor]:
        model = _still_texture(replace(SMALL, flow_size=128, flow_fit_iters=5, close_gaps=True,
                                       mouth_interior=interior))
        _drop_jaw(model, landmarks, 0.12)
        with torch.no_grad():
            return model(image, landmarks[None], aus, target)

    teeth_rows = int((image[0, 0, :, column] > 0.9).sum())
    stretched, painted = run(False, opened), run(True, opened)
    assert int((stretched["output"][0, 0, :, column] > 0.9).sum()) > 1.6 * teeth_rows
    assert int((painted["output"][0, 0, :, column] > 0.9).sum()) <= teeth_rows + 1
    cavity = painted["output"][0, :, :, column].mean(0) < 0.35
    assert int(cavity.sum()) >= 4 and not bool((stretched["output"][0, :, :, column].mean(0) < 0.35).any())
    assert float(painted["painted"][0, 0, :, column].max()) == 1.0 and stretched["painted"] is None
    still = run(True, aus)
    assert torch.equal(still["output"], run(False, aus)["output"]) and not bool(still["painted"].any())


def test_a_closed_eye_gets_a_lid_and_a_lash_line() -> None:
    """An eye whose upper lid meets the lower: the squeezed eye is painted over with the skin below the eye, with a
    dark lash line where the lids meet; an eye closed only part of the way is left to the warp."""
    landmarks = gap_face()
    upper, lower = list(GAP_CONTOURS[0][1]), list(GAP_CONTOURS[0][2])
    size = 128
    image = torch.full((1, 3, size, size), 0.8)
    image[:, :, : size // 2] = 0.3  # above the eyes' middle row: darker (a brow), which the lid must not take
    aus = torch.zeros(1, 17)
    blink = aus + torch.eye(17)[AU_NAMES.index("AU45"):][:1]

    def run(share: float) -> dict[str, torch.Tensor]:
        model = _still_texture(replace(SMALL, flow_size=128, flow_fit_iters=5, close_gaps=True, closed_lids=True))
        with torch.no_grad():
            lid_move = (landmarks[upper, 1] - landmarks[lower, 1]) * 5  # AU45 +1 puts the upper lid on the lower
            model.motion.basis[AU_NAMES.index("AU45"), upper, 1] = lid_move * share
            return model(image, landmarks[None], aus, blink)

    shut = run(1.0)
    column = int((landmarks[upper[4], 0] + 1) / 2 * size)  # the eye's middle
    meet = int((landmarks[lower[4], 1] + 1) / 2 * size)
    out = shut["output"][0, 0, :, column]
    assert float(out[meet - 1: meet + 2].min()) < 0.4  # the lash line
    assert float(out[meet - 4: meet - 1].min()) > 0.6  # the lid, in the skin's colour from below the eye
    assert float(shut["painted"].max()) == 1.0
    assert not bool(run(0.3)["painted"].any())


def test_a_mouth_the_source_shows_open_gets_a_cavity_under_its_own_teeth_not_a_second_row() -> None:
    """The new band of a mouth opened further: under a closed source mouth, upper teeth below the upper lip and a
    cavity; under a mouth the source already shows open (its own teeth move with the lip), the cavity alone (teeth
    painted there stood below a smiling still's own as a second, grey slab)."""
    from reenact.model.paint import paint_mouth_interior

    size = 64
    image = torch.full((1, 3, size, size), 0.6)
    landmarks = torch.zeros(1, 478, 2)  # the cheeks' colour is read there: 0.6
    upper, lower = torch.full((1, size), -0.3), torch.full((1, size), 0.3)  # the lips' inner edges, landed
    ends = torch.tensor([[-0.5, 0.5]])  # a mouth half the crop wide
    for held, teeth in ((0.0, True), (0.05, False)):  # the source's half-gap: shut, or open 0.1 of the mouth's width
        out, painted = paint_mouth_interior(image, image, landmarks, upper, lower, torch.full((1, size), held), ends)
        band = painted[0, 0] > 0.99
        assert int(band.sum()) > 100
        assert bool((out[0, :, band].mean(0) > 0.62).any()) == teeth, held  # teeth: a little brighter than skin
        assert bool((out[0, :, band].mean(0) < 0.3).any())  # the cavity either way


def test_an_upper_lid_brought_far_down_is_painted_to_its_edge() -> None:
    """An upper lid brought 0.85 of the way down a wide-open eye: the warp alone drew its lashes out over the eye (a
    streaked band); it is painted down to its own edge, with the lash line there, and the eye left open below it is
    not painted. Brought half way, it is the warp's."""
    landmarks = gap_face()
    upper, lower = list(GAP_CONTOURS[0][1]), list(GAP_CONTOURS[0][2])
    landmarks[lower + list(GAP_CONTOURS[0][3]), 1] += 0.3  # an eye open some 45 px at 256 px
    size = 256
    image = torch.full((1, 3, size, size), 0.8)
    aus = torch.zeros(1, 17)
    blink = aus + torch.eye(17)[AU_NAMES.index("AU45"):][:1]
    column = int((landmarks[upper[4], 0] + 1) / 2 * size)  # the eye's middle

    def run(share: float) -> dict[str, torch.Tensor]:
        model = _still_texture(replace(SMALL, flow_size=128, flow_fit_iters=5, close_gaps=True, closed_lids=True))
        with torch.no_grad():
            model.motion.basis[AU_NAMES.index("AU45"), upper, 1] = (landmarks[upper, 1] - landmarks[lower, 1]) * 5 * share
            return model(image, landmarks[None], aus, blink)

    def row(y: torch.Tensor) -> int:
        return int((y + 1) / 2 * size)

    lowered = run(0.85)
    edge = row(landmarks[upper[4], 1] + 0.85 * (landmarks[lower[4], 1] - landmarks[upper[4], 1]))
    out, paint = lowered["output"][0, 0, :, column], lowered["painted"][0, 0, :, column]
    assert float(paint.max()) == 1.0 and float(out[edge - 2: edge + 3].min()) < 0.4  # the lid, and its lash line
    assert float(paint[edge + 4: row(landmarks[lower[4], 1]) - 1].max()) < 0.05  # the eye below it
    assert not bool(run(0.5)["painted"].any())


def test_the_edit_gain_scales_asked_changes_only() -> None:
    """An edit's change goes through the motion ``edit_gain`` times (up to each AU's ceiling, 5 unless the config
    says otherwise); a transfer's (a reading) and no change do not."""
    crop, landmarks, aus = random_inputs()
    plain = Generator(SMALL).eval()
    with torch.no_grad():
        plain.motion.basis.normal_(0, 0.01)
    gain = [1.0] * len(AU_NAMES)
    gain[AU_NAMES.index("AU04")] = 2.5
    gained = Generator(replace(SMALL, edit_gain=gain)).eval()
    gained.load_state_dict(plain.state_dict())
    k = AU_NAMES.index("AU04")
    aus[:, k] = torch.tensor([1.0, 4.0])
    target = aus.clone()
    target[:, k] += 1.0
    stronger = target.clone()
    stronger[:, k] = torch.tensor([3.5, 5.0])  # 1 + 2.5 x 1; and 4 + 2.5 x 1 held to the AUs' range, 5
    with torch.no_grad():
        asked = gained(crop, landmarks, aus, target, asked=True)
        assert torch.allclose(asked["moves"], plain(crop, landmarks, aus, stronger)["moves"], atol=1e-6)
        # The texture step sees the target as given: the same output as a model told the stronger target's flow.
        same_flow = plain(crop, landmarks, aus, target, flow=asked["flow"])["output"]
        assert torch.allclose(asked["output"], same_flow, atol=1e-6)
        read = gained(crop, landmarks, aus, target)
        assert torch.equal(read["moves"], plain(crop, landmarks, aus, target)["moves"])
        assert torch.equal(gained(crop, landmarks, aus, aus, asked=True)["flow"], torch.zeros_like(asked["flow"]))
    # The gain travels with the weights' config.
    assert GeneratorConfig.from_json(gained.config.to_json()).edit_gain == gain
    # A ceiling past 5 lets the gained target follow: 4 + 2.5 x 1 held at 6 instead.
    ceiling = [5.0] * len(AU_NAMES)
    ceiling[k] = 6.0
    gained.reconfigure(edit_ceiling=ceiling)
    stronger[:, k] = torch.tensor([3.5, 6.0])
    with torch.no_grad():
        assert torch.allclose(gained(crop, landmarks, aus, target, asked=True)["moves"],
                              plain(crop, landmarks, aus, stronger)["moves"], atol=1e-6)
    assert GeneratorConfig.from_json(gained.config.to_json()).edit_ceiling == ceiling


def test_the_texture_strength_scales_the_texture_steps_share_only() -> None:
    """The texture step's mask is multiplied by ``texture_strength``: the output moves from the warped face by that
    share of the full texture's change; 0 leaves the warp alone, and the motion never changes."""
    model = load_generator()
    crop, landmarks, aus = random_inputs(batch=1)
    target = aus.clone()
    target[:, AU_NAMES.index("AU12")] += 2
    results = {}
    with torch.no_grad():
        for strength in (1.0, 0.5, 0.0):
            model.reconfigure(texture_strength=strength, mouth_interior=False, closed_lids=False)  # the paint apart
            results[strength] = model(crop, landmarks, aus, target)
    full, half, none = results[1.0], results[0.5], results[0.0]
    assert torch.equal(half["flow"], full["flow"]) and torch.equal(none["flow"], full["flow"])
    change = full["output"] - full["warped"]
    inside = (full["output"] > 0.01) & (full["output"] < 0.99)  # where the clamp to [0, 1] did not act
    assert change[inside].abs().max() > 0.01  # the texture does something here
    assert torch.allclose((half["output"] - half["warped"])[inside], 0.5 * change[inside], atol=1e-5)
    assert torch.allclose(none["output"], none["warped"], atol=1e-6)
    assert GeneratorConfig.from_json(model.config.to_json()).texture_strength == 0.0


def test_head_pose_motion_is_added_to_a_model_and_moves_the_face_only_when_asked() -> None:
    model = Generator(SMALL).eval()
    with torch.no_grad():
        model.motion.basis.normal_(0.0, 0.1)
    turned = model.with_head_pose()
    assert (turned.config.n_pose, turned.config.flow_fit_iters) == (3, 5) and model.config.n_pose == 0
    assert not turned.motion.pose_basis.any() and torch.equal(turned.motion.basis, model.motion.basis)
    crop, landmarks, aus = random_inputs()
    with torch.no_grad():
        turned.motion.pose_basis.normal_(0.0, 0.1)
        still = turned(crop, landmarks, aus, aus.clone(), pose_change=torch.zeros(2, 3))
        nod = turned(crop, landmarks, aus, aus.clone(), pose_change=torch.tensor([[10.0, 0, 0], [0, -5.0, 0]]))
    assert torch.equal(still["flow"], torch.zeros_like(still["flow"])) and torch.equal(still["output"], crop)
    assert nod["flow"].abs().amax(dim=(1, 2, 3)).min() > 1e-3
    assert torch.equal(nod["mask"], torch.zeros_like(nod["mask"]))  # a head turn alone asks nothing of the texture
    with pytest.raises(ValueError, match="no head-pose motion"):
        model(crop, landmarks, aus, aus, pose_change=torch.zeros(2, 3))


def test_a_transfer_can_follow_the_driving_head() -> None:
    """The driving head's turn from its median pose moves the face even where the AUs do not change."""
    times = np.arange(10) / 10
    poses = [np.array([0.0, 0.0, 0.0], np.float32)] * 6 + [np.array([8.0, -6.0, 0.0], np.float32)] * 3 + [None]
    track = DrivingTrack.from_rows(list(times), [np.ones(len(AU_NAMES), np.float32)] * 10, poses)
    assert np.allclose(track.turn(0.0), 0) and np.allclose(track.turn(0.75), [8, -6, 0]) and np.allclose(track.turn(0.9), [8, -6, 0])
    model = Generator(SMALL).with_head_pose().eval()
    with torch.no_grad():
        model.motion.pose_basis.normal_(0.0, 0.1)
    crop, face = _face()
    alignment = estimate_alignment(face.xy, 64)
    threads = torch.get_num_threads()
    try:
        target = TransferTarget(track)
        with pytest.raises(ValueError, match="cannot turn the head"):
            GeneratorEditor(Generator(SMALL), target, smooth=False, head_turn=track.turn)
        keep = GeneratorEditor(model, target, smooth=False)
        follow = GeneratorEditor(model, target, smooth=False, head_turn=track.turn)
        assert keep(crop, face, alignment, 0.75) is crop  # the AUs do not change
        assert follow(crop, face, alignment, 0.0) is crop  # nor does the head, at its usual pose
        edited = follow(crop, face, alignment, 0.75).image
    finally:
        torch.set_num_threads(threads)
    assert np.abs(edited.astype(int) - crop).mean() > 1


def test_the_texture_net_sees_each_au_as_a_constant_plane() -> None:
    """Its first layer, computed as image + one AU-weighted kernel over a plane of ones, is the convolution of the
    image stacked with one constant plane per AU input (target AUs, then their change)."""
    texture = Generator(SMALL).texture.eval()
    image, _, aus = random_inputs(batch=3)
    target = aus + torch.linspace(-1, 1, len(AU_NAMES))
    seen = []
    texture.enc1[1].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        texture(image, target, aus)
        planes = torch.cat([target, target - aus], dim=1)[:, :, None, None].expand(-1, -1, 64, 64) / 5.0
        expected = texture.enc1[0](torch.cat([image * 2 - 1, planes], dim=1))
    assert torch.allclose(seen[0], expected, atol=1e-5)


def _face(size: int = 64, seed: int = 0) -> tuple[np.ndarray, FaceObservation]:
    rng = np.random.default_rng(seed)
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:, :2] = rng.uniform(0.3 * size, 0.7 * size, (478, 2))
    face = FaceObservation(landmarks, np.zeros(52, np.float32), np.eye(4, dtype=np.float32), (0.0, 0.0, 1.0, 1.0))
    crop = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return crop, face


def test_the_editor_runs_no_network_where_nothing_changes() -> None:
    """An empty edit gives back the crop itself; after an edit's time range ends, the crop is only warped while
    the smoothed flow settles, and then given back as it is."""
    model = Generator(SMALL).eval()
    with torch.no_grad():
        model.motion.basis.normal_(0.0, 0.2)  # some motion, for any AU
    crop, face = _face()
    alignment = estimate_alignment(face.xy, 64)
    threads = torch.get_num_threads()
    try:
        empty = GeneratorEditor(model, ExpressionTarget((AUEdit("AU12", 0.0, True),)))
        assert torch.get_num_threads() == 1
        assert all(empty(crop, face, alignment, i / 25) is crop for i in range(5))
        ranged = ExpressionTarget((AUEdit("AU12", 3.0, True),), start=0.0, end=0.4, ramp=0.1)
        editor = GeneratorEditor(model, ranged)
        results = [editor(crop, face, alignment, i / 25) for i in range(100)]
    finally:
        torch.set_num_threads(threads)
    assert all(isinstance(r, EditedCrop) and r.moved is not None for r in results[:10])  # edited, landmarks moved
    # The colour match's reference: the crop as warped, without the texture step's residual.
    assert all(r.reference.shape == crop.shape and not np.array_equal(r.reference, crop) for r in results[:10])
    after = results[13:]
    settled = next(i for i, r in enumerate(after) if r is crop)
    assert 0 < settled < 50 and all(r is crop for r in after[settled:])
    assert all(isinstance(r, EditedCrop) and r.image is not crop for r in after[:settled])  # warped only, settling


def test_normalised_coordinates_match_pixel_centres() -> None:
    assert normalise(np.array([-0.5, 127.5]), 128) == pytest.approx([-1.0, 1.0])


def test_weights_round_trip(tmp_path: Path) -> None:
    model = Generator(SMALL)
    weights = save_generator(model, tmp_path / "small")
    assert weights.suffix == ".safetensors" and (tmp_path / "small.json").is_file()
    loaded = load_generator(tmp_path / "small")
    assert loaded.config == SMALL
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_or_wrong_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_generator(tmp_path / "nope")
    save_generator(Generator(SMALL), tmp_path / "m")
    (tmp_path / "m.json").write_text(GeneratorConfig().to_json())  # config of another size
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        load_generator(tmp_path / "m")


def test_au_edits_parse() -> None:
    assert parse_au_edit("AU12=2.5") == AUEdit("AU12", 2.5, False)
    assert parse_au_edit("au12=+1.5") == AUEdit("AU12", 1.5, True)
    assert parse_au_edit("26=-1") == AUEdit("AU26", -1.0, True)
    for bad in ("AU12", "AU12=high", "AU99=1", "AU12=7"):
        with pytest.raises(ValueError):
            parse_au_edit(bad)


def test_targets_set_add_preset_and_ramp() -> None:
    source = np.full(len(AU_NAMES), 1.0, np.float32)
    i12, i26 = AU_NAMES.index("AU12"), AU_NAMES.index("AU26")
    target = ExpressionTarget((AUEdit("AU12", 3.0, False), AUEdit("AU26", 1.5, True)))
    goal = target(source, 0.0)
    assert goal[i12] == 3.0 and goal[i26] == 2.5 and goal[0] == 1.0
    assert np.array_equal(ExpressionTarget((AUEdit("AU12", 0.0, True),))(source, 0.0), source)  # empty edit
    happy = ExpressionTarget(preset="happy", strength=0.5)(source, 0.0)
    assert happy[i12] == pytest.approx(1.0 + 0.5 * (PRESETS["happy"]["AU12"] - 1.0))
    ramped = ExpressionTarget((AUEdit("AU12", 3.0, False),), start=2.0, end=4.0, ramp=0.5)
    assert ramped(source, 1.0)[i12] == 1.0  # before the range
    assert ramped(source, 1.75)[i12] == pytest.approx(2.0)  # half way up the ramp
    assert ramped(source, 3.0)[i12] == 3.0
    assert ramped(source, 4.25)[i12] == pytest.approx(2.0)
    assert ramped(source, 5.0)[i12] == 1.0
    assert parse_preset("sad:0.7") == ("sad", 0.7)
    with pytest.raises(ValueError, match="happy"):
        parse_preset("joyful")


def test_a_preset_takes_away_what_contradicts_it_and_keeps_speech() -> None:
    """A smiling, talking face made sad or surprised loses its smile but keeps its mouth's opening (surprised opens
    it further); a frowning one made happy loses its frown."""
    face = dict.fromkeys(AU_NAMES, 0.5) | {"AU12": 3.0, "AU25": 2.0, "AU26": 1.5, "AU04": 2.0}
    source = np.array([face[name] for name in AU_NAMES], np.float32)
    sad, happy = (dict(zip(AU_NAMES, ExpressionTarget(preset=p)(source, 0.0))) for p in ("sad", "happy"))
    assert sad["AU12"] == 0.0 and sad["AU15"] == 2.5 and (sad["AU25"], sad["AU26"]) == (2.0, 1.5)
    surprised = dict(zip(AU_NAMES, ExpressionTarget(preset="surprised")(source, 0.0)))
    assert surprised["AU12"] == surprised["AU06"] == surprised["AU04"] == 0.0 and surprised["AU26"] == 3.0
    assert happy["AU04"] == 0.0 and happy["AU12"] == 3.0 and happy["AU26"] == 1.5
    assert happy["AU25"] == 2.0  # the face's own: happy leaves the lips to speech
    wider = dict(zip(AU_NAMES, ExpressionTarget(preset="happy", strength=2.0)(source + 1.0, 0.0)))
    assert wider["AU12"] == 4.0 and wider["AU06"] == 3.5 and wider["AU04"] == 0.0  # strength 2: twice the rise
    for name, prototype in PRESETS.items():  # every emotion but neutral leaves the jaw to the face
        if name != "neutral":
            assert "AU26" in prototype or dict(zip(AU_NAMES, ExpressionTarget(preset=name)(source, 0.0)))["AU26"] == 1.5


def test_the_edit_ceiling_reaches_as_far_as_the_data_moved() -> None:
    """A clip whose frames read AU26 4.5 moved their jaw landmarks as far as the field does at a change of 6: the
    jaw's ceiling comes out 6 (from the clip's rest, read 0). AUs with no frames read that high, or whose frames
    moved less than their field at 5, keep 5."""
    from reenact.train.dataset import PreparedClip
    from reenact.train.gain import fit_edit_ceiling

    model = Generator(SMALL)
    jaw, brow = AU_NAMES.index("AU26"), AU_NAMES.index("AU01")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.motion.basis.zero_()
        model.motion.basis[jaw, 300:340, 1] = -0.05 * (1 + torch.rand(40, generator=g))  # the chin's drop per 5
        model.motion.basis[brow, 10:40, 1] = 0.04
    field = model.motion.basis.detach().numpy()
    size, frames = 64, 40
    rest = np.random.default_rng(0).uniform(10, 54, (478, 2)).astype(np.float32)
    aus = np.zeros((frames, len(AU_NAMES)), np.float32)
    aus[20:, jaw] = 4.5
    aus[20:, brow] = 4.5  # read high, but the brows did not move
    landmarks = np.repeat(rest[None], frames, axis=0)
    landmarks[20:] -= field[jaw] * (6.0 / 5.0) * (size / 2)  # a landmark lands at p - move (crop pixels)
    zeros = np.zeros(frames, np.float32)
    clip = PreparedClip("c", "c.mp4", "someone", 25.0, np.zeros((frames, size, size, 3), np.uint8), zeros.astype(int),
                        zeros, aus, np.zeros((frames, 52), np.float16), landmarks, np.zeros((frames, 3), np.float32),
                        np.full((frames, len(AU_NAMES)), np.nan, np.float32))
    lines: list[dict] = []
    ceiling = fit_edit_ceiling(model, [clip], log=lines.append)
    assert ceiling[jaw] == pytest.approx(6.0, abs=1e-3) and model.config.edit_ceiling == ceiling
    assert [c for i, c in enumerate(ceiling) if i != jaw] == [5.0] * (len(AU_NAMES) - 1)
    assert [(line["au"], line["ceiling"]) for line in lines] == [("AU01", 5.0), ("AU26", 6.0)]
    assert lines[0]["reaches"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.usefixtures("require_face_model")
def test_the_texture_step_paints_only_where_the_edited_aus_act(astronaut: np.ndarray) -> None:
    """With ``texture_regions``, a cheek-raise edit's texture gate is open on the cheeks and shut on the chin and the
    forehead (where ``hq`` once drew a lip-red crescent for it); a jaw drop's is open on the chin."""
    from reenact.face.align import estimate_alignment
    from reenact.face.aus import AU_NAMES
    from reenact.face.tracker import FaceTracker
    from reenact.model.coords import normalise
    from reenact.model.networks import texture_gate

    with FaceTracker(video_mode=False) as tracker:
        face = tracker(astronaut, 0.0)
    points = normalise(estimate_alignment(face.xy, 128).to_crop(face.xy), 128).astype(np.float32)
    landmarks = torch.from_numpy(points)[None]
    source = torch.zeros(1, len(AU_NAMES))

    def gate_at(au: str, index: int) -> float:
        target = source.clone()
        target[0, AU_NAMES.index(au)] = 2.0
        gate = texture_gate(landmarks, source, target, 64)[0, 0].numpy()
        x, y = np.clip(((points[index] + 1) / 2 * 64).astype(int), 0, 63)
        return float(gate[y, x])

    cheek, chin, forehead = 205, 152, 10
    assert gate_at("AU06", cheek) > 0.9
    assert gate_at("AU06", chin) < 0.05 and gate_at("AU06", forehead) < 0.05
    assert gate_at("AU26", chin) > 0.5
    assert texture_gate(landmarks, source, source, 64).abs().max() == 0  # no change, no texture


@pytest.mark.usefixtures("require_face_model")
def test_the_texture_step_in_bfloat16_gives_the_float32_edit_within_one_level(astronaut: np.ndarray) -> None:
    """``--precision auto`` runs the texture step in bfloat16 where the hardware has it: on a real face, every preset's
    edit is the float32 one to within one 8-bit level (torch emulates bfloat16 where the CPU lacks it: same numbers)."""
    from reenact.devices import texture_dtype
    from reenact.face.align import crop_face
    from reenact.face.tracker import FaceTracker

    assert texture_dtype("cpu", "float32") is None
    assert texture_dtype("cpu", "auto") in (None, torch.bfloat16)
    with FaceTracker(video_mode=False) as tracker:
        face = tracker(astronaut, 0.0)
    alignment = estimate_alignment(face.xy, 256)
    crop = crop_face(astronaut, alignment)
    model = load_generator("default")
    for preset in ("happy", "surprised", "angry", "sad"):
        edits = []
        for dtype in (None, torch.bfloat16):
            model.texture_dtype = dtype
            target = ExpressionTarget((), preset)
            editor = GeneratorEditor(model, lambda aus, t, target=target: target(aus, t), smooth=False)
            edits.append(editor(crop, face, alignment, 0.0).image.astype(int))
        exact, fast = edits
        assert np.abs(exact - crop).max() > 20, preset  # a real edit, not an empty one
        assert np.abs(exact - fast).max() <= 1, preset
