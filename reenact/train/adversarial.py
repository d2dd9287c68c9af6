"""The texture step trained with a realism term and an AU critic (as GANimation does), the motion step frozen.

- ``AUCritic``: a small CNN that reads AU intensities (OpenFace's 0-5 scale) from an aligned crop, trained on the
  per-frame OpenFace labels of the training people, then frozen.
- ``PatchDiscriminator``: real crops against generated ones (hinge loss, spectral norm): the realism term that
  keeps the generator from painting whatever pattern fools the critic.
- The generator's loss: B rebuilt from A (masked L1 + L1 on gradients + the mask penalty, as ``--phase texture``),
  plus ``adv_weight`` times the realism term on every output, plus ``au_weight`` times the squared error between
  the AU change the critic reads (edit against source) and the change asked for, on random AU edits of A.

The AU response is never judged by this critic: ``reenact eval`` measures it with reenact's MediaPipe reader.
Run as ``reenact train DATASET -o RUN --phase adversarial ...``; it needs torch and OpenCV only, so it runs on a
bare GPU machine from a ``pack_dataset`` copy.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Queue

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from reenact.files import atomic_output
from reenact.model.networks import Generator, GeneratorConfig, TextureNet
from reenact.train.dataset import PreparedClip, load_dataset
from reenact.train.losses import gradient_l1, landmark_motion_loss, masked_l1
from reenact.train.pairs import PairBatch, PairSampler


class AUCritic(nn.Module):
    """(B, 3, S, S) crop in [0, 1] -> (B, 17) AU intensities on OpenFace's scale."""

    def __init__(self, n_aus: int = 17, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (width, 2 * width, 4 * width, 8 * width, 8 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, n_aus)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        crop = F.interpolate(crop, size=(128, 128), mode="bilinear", align_corners=False) if crop.shape[-1] != 128 else crop
        return self.head(self.features(crop * 2 - 1).mean(dim=(2, 3)))


class PatchDiscriminator(nn.Module):
    """(B, 3, S, S) -> (B, 1, S/8, S/8) realism scores, one per patch."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(spectral_norm(nn.Conv2d(chans[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image * 2 - 1)


def random_edits(aus: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Targets like users ask for: one or two AUs of each row raised by 0.5-3.5, or lowered to near zero."""
    target = aus.copy()
    for row in target:
        for k in rng.choice(len(row), size=rng.integers(1, 3), replace=False):
            row[k] = row[k] + rng.uniform(0.5, 3.5) if rng.random() < 0.75 or row[k] < 1 else rng.uniform(0, 0.3)
    return np.clip(target, 0, 5).astype(np.float32)


@dataclass(frozen=True)
class AdversarialOptions:
    seconds: float = 300.0  # wall-clock budget for the generator phase (the critic's comes first)
    batch: int = 64
    lr: float = 2e-4
    au_weight: float = 0.02
    adv_weight: float = 0.01
    mask_weight: float = 0.002
    gradient_weight: float = 0.5
    critic_steps: int = 1500
    snapshots: int = 3  # texture weights kept at evenly spaced times
    texture_size: int | None = None  # a new texture step of this size (and texture_channels), else the init's
    texture_channels: int = 32
    motion: int = 0  # 1: the per-AU motion basis trains too (each AU still confined to its region, and held to
    # the landmark moves by ``landmark_weight``), so the critic can ask the warp for more motion
    landmark_weight: float = 1.0
    basis_lr: float = 2e-5  # the basis is already the least-squares fit: by default only nudged
    critic_reads: str = "output"  # or "warped": the AU term then trains the motion step only, never the texture
    validation_people: int = 8  # held out as ``reenact train`` does, when no list of training people is given
    expressive: float = 0.0  # share of pairs where one AU changes by 1 or more (PairSampler's ``expressive``)
    seed: int = 0


def _labelled_frames(clips: list[PreparedClip]) -> tuple[np.ndarray, np.ndarray]:
    crops = np.concatenate([c.crops for c in clips])
    labels = np.concatenate([c.openface for c in clips])
    ok = ~np.isnan(labels).any(axis=1)
    return crops[ok], labels[ok]


def train_critic(clips: list[PreparedClip], device: torch.device, steps: int, batch: int = 128, seed: int = 0,
                 log=print) -> AUCritic:
    """An AU critic fitted to the OpenFace labels of ``clips``' frames (a mirrored face has the same AUs)."""
    crops, labels = _labelled_frames(clips)
    critic = AUCritic().to(device)
    optimizer = torch.optim.AdamW(critic.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    held = rng.random(len(crops)) < 0.05  # frames to report the critic's error on
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)[:512]
    images = torch.from_numpy(crops).to(device)  # uint8 on the device: 49 KB a frame
    targets = torch.from_numpy(labels).to(device)
    to_float = lambda idx: images[idx].permute(0, 3, 1, 2).float() / 255  # noqa: E731
    # The error of always answering the mean: what the critic's held-out error is to be compared with.
    baseline = float(np.abs(labels[held_idx] - labels[train_idx].mean(axis=0)).mean())
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(train_idx, batch)).to(device)
        x = to_float(idx)
        x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x, x.flip(-1))
        x = (x * torch.empty(len(x), 1, 1, 1, device=device).uniform_(0.8, 1.2)).clamp(0, 1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.smooth_l1_loss(critic(x).float(), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % max(1, steps // 5) == 0:
            critic.eval()
            with torch.no_grad():
                hidx = torch.from_numpy(held_idx).to(device)
                error = (critic(to_float(hidx)) - targets[hidx]).abs().mean(dim=0)
            critic.train()
            log({"critic_step": step + 1, "loss": round(float(loss.detach()), 4), "held_mae": round(float(error.mean()), 3),
                 "held_mae_of_mean": round(baseline, 3)})
    critic.eval()
    for p in critic.parameters():
        p.requires_grad_(False)
    return critic


def _batches(sampler: PairSampler, batch: int, queue: Queue, stop: threading.Event) -> None:
    while not stop.is_set():
        queue.put(sampler.sample(batch, images=True))


def train_adversarial(dataset_dir: str | Path, out_dir: str | Path, init: str | Path | None,
                      options: AdversarialOptions, train_people: list[str] | None = None,
                      critic: AUCritic | None = None) -> dict:
    """Train the texture step of ``init`` (the default model when None; its motion step stays as it is unless
    ``options.motion``) on ``train_people`` (else all but ``options.validation_people`` held out, as ``reenact
    train`` splits). Writes ``OUT/split.json``, ``OUT/snapshots.pt`` (the trained weights at evenly spaced times,
    with the config), ``OUT/train.log`` and the last state as ``OUT/model.safetensors`` + ``.json``. Returns the
    last log line."""
    from reenact.model.io import load_generator, save_generator
    from reenact.train.trainer import split_people, write_split

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(options.seed)
    log_file = open(out / "train.log", "a")

    def log(line: dict) -> None:
        print(json.dumps(line), file=log_file, flush=True)
        print(json.dumps(line), flush=True)

    dataset = load_dataset(dataset_dir)
    if train_people is None:
        train_people, held = split_people(dataset.identities, options.validation_people)
    else:
        held = sorted(set(dataset.identities) - set(train_people))
    write_split(out, sorted(train_people), held)
    clips = [c for c in dataset.clips if c.identity in train_people]
    model = load_generator(init, device)  # the default model when no init is named
    if options.texture_size:
        config = GeneratorConfig(**{**asdict(model.config), "texture_size": options.texture_size,
                                    "texture_channels": options.texture_channels})
        _new_texture(model, config)
    if critic is not None:
        critic = critic.to(device)
    elif options.au_weight > 0:
        critic = train_critic(clips, device, options.critic_steps, seed=options.seed, log=log)
        with atomic_output(out / "critic.pt") as tmp:
            torch.save(critic.state_dict(), tmp)
    disc = PatchDiscriminator().to(device)
    model.requires_grad_(False)
    model.texture.requires_grad_(True)
    groups = [{"params": list(model.texture.parameters())}]
    basis = model.motion.basis
    if options.motion:
        from reenact.face.regions import region_mask

        mean_landmarks = np.concatenate([c.landmarks for c in clips]).mean(axis=0)
        allowed = torch.from_numpy(region_mask(mean_landmarks)).to(device)[..., None].float()
        basis.requires_grad_(True)
        basis.register_hook(lambda grad: grad * allowed)  # an AU's motion never leaves its region
        groups.append({"params": [basis], "lr": options.basis_lr})
    trained = [p for group in groups for p in group["params"]]
    model.train()
    opt_g = torch.optim.Adam(groups, lr=options.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=(0.5, 0.999))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    rng = np.random.default_rng(options.seed)

    queue: Queue[PairBatch] = Queue(maxsize=8)
    stop = threading.Event()
    # Pairs are built on the CPU (OpenCV releases the GIL) while the GPU trains; the samplers share one index.
    sampler = PairSampler(clips, seed=options.seed, expressive=options.expressive)
    samplers = [sampler] + [sampler.reseeded(options.seed + 17 * i) for i in (1, 2)]
    workers = [threading.Thread(target=_batches, args=(s, options.batch, queue, stop), daemon=True) for s in samplers]
    for w in workers:
        w.start()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    started, step, last = time.perf_counter(), 0, {}
    next_snapshot = options.seconds / options.snapshots
    try:
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= next_snapshot or elapsed >= options.seconds:
                snapshots[step] = {k: v.detach().float().cpu().clone() for k, v in model.texture.state_dict().items()}
                if options.motion:
                    snapshots[step]["motion.basis"] = basis.detach().float().cpu().clone()
                with atomic_output(out / "snapshots.pt") as tmp:  # copied away while training goes on
                    torch.save({"config": asdict(model.config), "options": asdict(options), "snapshots": snapshots}, tmp)
                log({**last, "snapshot": step})
                next_snapshot += options.seconds / options.snapshots
                if elapsed >= options.seconds:
                    break
            pairs = queue.get()
            t = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in vars(pairs).items() if v is not None}
            edit = torch.from_numpy(random_edits(pairs.aus_a, rng)).to(device)
            a2 = torch.cat([t["image_a"], t["image_a"]])
            with autocast:
                # The rebuilt half follows B's head too where the motion can; the edited half keeps A's.
                pose = torch.cat([t["pose_change"], torch.zeros_like(t["pose_change"])]) if model.config.n_pose else None
                result = model(a2, torch.cat([t["landmarks_a"]] * 2), torch.cat([t["aus_a"]] * 2),
                               torch.cat([t["aus_b"], edit]), pose_change=pose)
                outputs = result["output"]
                rebuilt, edited = outputs.chunk(2)
                judged = result["warped"].chunk(2)[1] if options.critic_reads == "warped" else edited
                losses = {
                    "l1": masked_l1(rebuilt.float(), t["image_b"], t["mask_b"]),
                    "grad": options.gradient_weight * gradient_l1(rebuilt.float(), t["image_b"], t["mask_b"]),
                    "mask": options.mask_weight * result["mask"].float().mean(),
                }
                if options.motion:
                    moves = result["moves"][: len(rebuilt)]
                    losses["landmarks"] = options.landmark_weight * landmark_motion_loss(moves.float(), t["landmarks_a"], t["landmarks_b"])
                if options.adv_weight > 0:
                    losses["adv"] = -options.adv_weight * disc(outputs).float().mean()
                if options.au_weight > 0 and critic is not None:
                    with torch.no_grad():
                        read_a = critic(t["image_a"]).float()
                    asked = edit - t["aus_a"]
                    losses["au"] = options.au_weight * ((critic(judged).float() - read_a) - asked).square().mean()
            total = sum(losses.values())
            opt_g.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            opt_g.step()
            if options.adv_weight > 0:
                with autocast:
                    d_loss = F.relu(1 - disc(t["image_b"])).mean() + F.relu(1 + disc(outputs.detach())).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.float().backward()
                opt_d.step()
                losses["d"] = d_loss
            step += 1
            if step % 200 == 0:
                last = {"step": step, "seconds": round(time.perf_counter() - started, 1),
                        **{k: round(float(v.detach()), 5) for k, v in losses.items()}}
                log(last)
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()
        log_file.close()
    save_generator(model.eval(), out / "model", {"phase": "adversarial", "step": str(step)})
    return {**last, "step": step, "seconds": round(time.perf_counter() - started, 1)}


def _new_texture(model: Generator, config: GeneratorConfig) -> None:
    """Give ``model`` a fresh texture step of ``config``'s size (the config travels with the weights)."""
    model.reconfigure(**asdict(config))
    model.texture = TextureNet(config).to(model.motion.basis.device)


def apply_snapshot(model: Generator, snapshot: dict, step: int | None = None) -> Generator:
    """``model`` (the init) with the texture step of ``snapshot`` (a ``snapshots.pt``; the last one when no step)."""
    config = GeneratorConfig(**snapshot["config"])
    states = snapshot["snapshots"]
    state = dict(states[max(states) if step is None else step])
    basis = state.pop("motion.basis", None)
    _new_texture(model, config)
    model.texture.load_state_dict(state)
    if basis is not None:
        with torch.no_grad():
            model.motion.basis.copy_(basis)
    return model
