"""The generator's building blocks: flow convention, empty edits, weights on disk, AU targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.editing import AUEdit, ExpressionTarget, parse_au_edit
from reenact.errors import ModelFileError
from reenact.face.aus import AU_NAMES
from reenact.model.io import load_generator, save_generator
from reenact.model.networks import Generator, GeneratorConfig, normalise, sample_at, splat, warp
from reenact.model.presets import PRESETS, parse_preset
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


def test_flow_convention_is_backward_in_normalised_units() -> None:
    """A constant flow of +2 pixels in x shows each pixel's right neighbour's right neighbour."""
    size = 32
    image = torch.arange(size, dtype=torch.float32).repeat(size, 1)[None, None]  # value = x
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 2 * 2 / size  # 2 pixels in normalised units
    warped = warp(image, flow)
    assert torch.allclose(warped[0, 0, :, 4:20], image[0, 0, :, 6:22], atol=1e-4)


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
