"""Packing a dataset for a GPU machine, and the texture step trained with the realism term and the AU critic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.evaluate import self_reenactment
from reenact.model.io import load_generator
from reenact.train.adversarial import (
    AdversarialOptions,
    AUCritic,
    apply_snapshot,
    random_edits,
    train_adversarial,
    train_critic,
)
from reenact.face.regions import region_mask
from reenact.train.dataset import decode_crops, load_dataset, pack_dataset

pytestmark = pytest.mark.usefixtures("require_face_model")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def test_a_packed_copy_keeps_every_nth_frame_and_its_labels(tiny_dataset: Path, tmp_path: Path) -> None:
    full = load_dataset(tiny_dataset)
    counts = pack_dataset(tiny_dataset, tmp_path / "pack", stride=2, crf=16)
    packed = load_dataset(tmp_path / "pack")
    assert counts == {"clips": 2, "frames": sum(len(c.frame[::2]) for c in full.clips), "identities": 2}
    assert packed.stride == full.stride * 2
    with np.load(next((tmp_path / "pack" / "clips").rglob("*.npz"))) as data:
        assert json.loads(str(data["meta"]))["stride"] == packed.stride
    for a, b in zip(full.clips, packed.clips):
        assert a.id == b.id and a.identity == b.identity
        np.testing.assert_array_equal(b.frame, a.frame[::2])
        np.testing.assert_array_equal(b.openface, a.openface[::2])
        np.testing.assert_allclose(b.landmarks, a.landmarks[::2], atol=0.07)  # float16: 1/16 px at 128 px
        assert b.crops.shape == a.crops[::2].shape and _psnr(b.crops, a.crops[::2]) > 35


def test_a_packed_copy_keeps_the_people_asked_for_in_whole_clips(tiny_dataset: Path, tmp_path: Path) -> None:
    index = json.loads((tiny_dataset / "index.json").read_text())
    people = [e["identity"] for e in index["clips"]]
    counts = pack_dataset(tiny_dataset, tmp_path / "pack", identities=people[:1], max_frames_per_identity=5)
    packed = json.loads((tmp_path / "pack" / "index.json").read_text())["clips"]
    assert counts["identities"] == 1 and [e["identity"] for e in packed] == people[:1]
    # The cap (5) is below the clip's length, but a clip is kept whole (pairs are drawn within a clip).
    assert packed[0]["frames"] == index["clips"][0]["frames"] == counts["frames"] > 5


def test_crops_decode_the_same_without_pyav(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare GPU machine has OpenCV but no PyAV: its decode of our clips must be the same pixels."""
    mp4 = next((tiny_dataset / "clips").rglob("*.mp4"))
    with_pyav = decode_crops(mp4)
    monkeypatch.setitem(sys.modules, "reenact.video", None)  # importing it now raises ImportError
    with_opencv = decode_crops(mp4)
    assert with_opencv.shape == with_pyav.shape
    assert _psnr(with_opencv, with_pyav) > 50


def test_random_edits_stay_on_the_au_scale() -> None:
    rng = np.random.default_rng(0)
    aus = rng.uniform(0, 5, (200, 17)).astype(np.float32)
    edits = random_edits(aus, rng)
    changed = (edits != aus).sum(axis=1)
    assert edits.min() >= 0 and edits.max() <= 5 and ((changed >= 1) & (changed <= 2)).all()


def test_the_critic_learns_the_openface_labels(tiny_dataset: Path) -> None:
    clips = list(load_dataset(tiny_dataset).clips)
    lines: list[dict] = []
    critic = train_critic(clips, torch.device("cpu"), steps=150, batch=16, log=lines.append)
    assert isinstance(critic, AUCritic) and not any(p.requires_grad for p in critic.parameters())
    assert len(lines) == 5
    # Better than always answering the labels' mean, on frames it did not train on.
    assert lines[-1]["held_mae"] < lines[-1]["held_mae_of_mean"]


def test_adversarial_training_changes_the_texture_and_keeps_motion_in_its_regions(tiny_dataset: Path, tmp_path: Path) -> None:
    init = load_generator()
    options = AdversarialOptions(seconds=8, batch=4, critic_steps=5, snapshots=2, motion=1, basis_lr=1e-3,
                                 critic_reads="warped", au_weight=0.5, validation_people=0)
    train_adversarial(tiny_dataset, tmp_path / "run", None, options)
    snapshot = torch.load(tmp_path / "run" / "snapshots.pt", weights_only=False)
    # One at each half of the 8 s; a step slower than 4 s (a loaded machine) leaves only the last.
    assert 1 <= len(snapshot["snapshots"]) <= 2 and (tmp_path / "run" / "critic.pt").is_file()
    lines = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert any("critic_step" in line for line in lines) and any("snapshot" in line for line in lines)
    trained = apply_snapshot(load_generator(), snapshot)
    assert any((a != b).any() for a, b in zip(init.texture.state_dict().values(), trained.texture.state_dict().values()))
    moved = (trained.motion.basis != init.motion.basis).any(dim=-1).numpy()
    assert moved.any()
    # Each AU's motion moved only inside its FACS region (the region of the training faces' mean shape).
    clips = list(load_dataset(tiny_dataset).clips)
    allowed = region_mask(np.concatenate([c.landmarks for c in clips]).mean(axis=0))
    assert not (moved & ~allowed).any()
    result = self_reenactment(trained.eval(), clips, pairs=8)
    assert 10 < result.psnr < 60


def test_a_bigger_texture_step_can_be_trained_on_the_default_motion(tiny_dataset: Path, tmp_path: Path) -> None:
    options = AdversarialOptions(seconds=4, batch=2, snapshots=1, au_weight=0, texture_size=128, texture_channels=16,
                                 validation_people=0)
    train_adversarial(tiny_dataset, tmp_path / "run", None, options)
    snapshot = torch.load(tmp_path / "run" / "snapshots.pt", weights_only=False)
    model = apply_snapshot(load_generator(), snapshot)
    assert model.config.texture_size == 128 and model.config.texture_channels == 16
    assert not (tmp_path / "run" / "critic.pt").exists()  # no AU term, no critic
    crop = torch.rand(1, 3, 256, 256)
    out = model(crop, torch.zeros(1, 478, 2), torch.zeros(1, 17), torch.full((1, 17), 1.0))["output"]
    assert out.shape == crop.shape and torch.isfinite(out).all()


def test_reenact_train_runs_the_adversarial_phase(tiny_dataset: Path, tmp_path: Path) -> None:
    """Through the CLI, holding a person out as the other phases do, and leaving a loadable model."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "reenact", "train", str(tiny_dataset), "-o", str(run), "--phase", "adversarial",
               "--seconds", "3", "--batch", "2", "--validation-people", "2", "--expressive", "0.5", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run / "split.json").read_text()) == {"train": ["GRID-s1"], "validation": ["AOC"]}
    model = load_generator(run / "model")
    assert model.config == load_generator().config
    assert not (run / "critic.pt").exists()  # --au-weight 0 (the default): no critic

