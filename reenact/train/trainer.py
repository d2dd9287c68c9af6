"""Self-supervised training of the generator, in phases, resumable, on CPU or GPU, one or many processes.

- ``motion``: the predicted landmark moves must carry A's landmarks onto B's (MediaPipe landmarks give the
  displacement targets; nobody labels deformations). No images are needed, so this phase is cheap.
- ``texture``: with the motion step frozen, reconstruct B from A warped by the predicted flow: masked L1 and
  gradient L1 inside B's face, and a penalty on the attention mask so the residual stays small and local.
- ``joint``: both nets, both losses.
- ``basis``: no gradient steps: the motion step's per-AU displacement fields, fitted in closed form with each AU
  confined to its FACS region (``reenact.train.basis``), and per-degree fields of head pitch, yaw and roll; the
  default model's motion comes from this.
- ``gain``: no gradient steps either: per AU, the factor on an asked-for change (an edit, not a transfer) that
  makes reenact's AU reader see the change on training faces (``reenact.train.gain``; needs MediaPipe).

Several processes (``torchrun --nproc-per-node N -m reenact.cli train ...``) train data-parallel with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from reenact.face.regions import MESH
from reenact.files import atomic_output
from reenact.model.io import load_checkpoint, load_generator, save_generator
from reenact.model.networks import Generator, GeneratorConfig
from reenact.train.dataset import PreparedClip, load_dataset
from reenact.train.losses import gradient_l1, landmark_motion_loss, masked_l1
from reenact.train.pairs import PairBatch, PairSampler

Phase = Literal["motion", "texture", "joint", "basis", "gain"]


@dataclass(frozen=True)
class TrainOptions:
    phase: Phase = "motion"
    steps: int = 3000
    batch: int = 32
    lr: float = 3e-4
    seed: int = 0
    checkpoint_every: int = 250
    validation_people: int = 8  # identities held out of training, for validation
    validation_pairs: int = 128
    init: str | None = None  # start from these weights (e.g. the motion phase's model for the texture phase)
    mask_weight: float = 0.002  # 0.02 drove the mask to zero (texture unused) within 250 steps
    gradient_weight: float = 0.5
    landmark_weight: float = 1.0
    identity_budget: float | None = None  # --phase gain: no edit may move dlib's identity distance past this
    config: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(motion_channels=32, texture_channels=24))


@dataclass(frozen=True)
class TrainReport:
    steps: int
    seconds: float
    validation: dict[str, float]
    weights: Path


def split_people(identities: tuple[str, ...], count: int) -> tuple[list[str], list[str]]:
    """(train, validation) identities: every k-th of the sorted names is held out, never the largest speaker's."""
    names = sorted(identities)
    if count <= 0 or len(names) < 2:
        return names, []
    step = max(1, len(names) // count)
    held = [n for n in names[step // 2 :: step] if not n.startswith("GRID")][:count]
    return [n for n in names if n not in held], held


def write_split(out: Path, train: list[str], validation: list[str]) -> None:
    """``OUT/split.json``: which people a run trained on and which it held out (what ``reenact eval --split`` reads)."""
    (out / "split.json").write_text(json.dumps({"train": train, "validation": validation}, indent=1) + "\n")


def _tensors(batch: PairBatch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in vars(batch).items() if v is not None}


def pose_input(model: torch.nn.Module, t: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """B's head-pose change for a model whose motion takes one (None for the others)."""
    return t["pose_change"] if getattr(model, "module", model).config.n_pose else None


def _losses(model: torch.nn.Module, t: dict[str, torch.Tensor], options: TrainOptions) -> dict[str, torch.Tensor]:
    # One forward pass per step (DistributedDataParallel allows no more).
    result = model(t.get("image_a"), t["landmarks_a"], t["aus_a"], t["aus_b"], pose_change=pose_input(model, t))
    losses: dict[str, torch.Tensor] = {}
    if options.phase in ("motion", "joint"):
        moves = result["moves"]
        losses["landmarks"] = options.landmark_weight * landmark_motion_loss(moves, t["landmarks_a"], t["landmarks_b"])
    if options.phase != "motion":
        out, mask = result["output"], t["mask_b"]
        losses["l1"] = masked_l1(out, t["image_b"], mask)
        losses["grad"] = options.gradient_weight * gradient_l1(out, t["image_b"], mask)
        losses["mask"] = options.mask_weight * result["mask"].mean()
    return losses


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mse = (((a - b) ** 2) * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * a.shape[1] + 1e-8)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: Generator, batch: PairBatch, device: torch.device) -> dict[str, float]:
    """Landmark error of the flow against no motion, and masked PSNR of the output against copying A."""
    t = _tensors(batch, device)
    size = batch.image_a.shape[-1] if batch.image_a is not None else 128
    pose = pose_input(model, t)
    moved = model(None, t["landmarks_a"], t["aus_a"], t["aus_b"], pose_change=pose)["moves"][:, :MESH]
    target = t["landmarks_a"][:, :MESH] - t["landmarks_b"][:, :MESH]
    pixels = size / 2  # normalised units -> crop pixels
    out = {
        "landmark_px": float((moved - target).norm(dim=-1).mean() * pixels),
        "landmark_px_copy": float(target.norm(dim=-1).mean() * pixels),
    }
    if batch.image_a is not None:
        result = model(t["image_a"], t["landmarks_a"], t["aus_a"], t["aus_b"], pose_change=pose)
        out["psnr"] = float(psnr(result["output"], t["image_b"], t["mask_b"]).mean())
        out["psnr_copy"] = float(psnr(t["image_a"], t["image_b"], t["mask_b"]).mean())
    return out


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def train(dataset_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], options: TrainOptions = TrainOptions(),
          progress: bool = True) -> TrainReport:
    """Train (or resume) a generator from a prepared dataset; writes ``OUT/model.safetensors`` + ``.json``."""
    rank, world = _distributed()
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(dataset_dir)
    train_people, val_people = split_people(dataset.identities, options.validation_people)
    clips_of = lambda people: [c for c in dataset.clips if c.identity in people]  # noqa: E731
    sampler = PairSampler(clips_of(train_people), seed=options.seed + 1000 * rank)
    images = options.phase != "motion"
    val_clips: list[PreparedClip] = clips_of(val_people) or list(dataset.clips)
    val_batch = PairSampler(val_clips, seed=12345).sample(options.validation_pairs, images=True)

    model = load_generator(options.init, device) if options.init else Generator(options.config).to(device)
    write_split(out, train_people, val_people)
    if options.phase == "basis":
        return _fit_basis(model, clips_of(train_people), val_batch, out, device, options)
    if options.phase == "gain":
        return _fit_gain(model, clips_of(train_people), val_batch, out, device, options)
    trainable = {"motion": model.motion, "texture": model.texture, "joint": model}[options.phase]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable.parameters():
        p.requires_grad_(True)
    model.train()
    # The per-AU deformation fields need to travel far from zero; the rest is a small correction on top.
    basis = [model.motion.basis] if model.motion.basis.requires_grad else []
    rest = [p for p in model.parameters() if p.requires_grad and p is not model.motion.basis]
    groups = [{"params": rest}] + ([{"params": basis, "lr": options.lr * 10}] if basis else [])
    optimizer = torch.optim.Adam(groups, lr=options.lr)
    checkpoint = out / "checkpoint.pt"
    step = 0
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    runner: torch.nn.Module = model
    if world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    log = open(out / "train.log", "a") if rank == 0 else None
    started, validation = time.perf_counter(), {}
    console = Console(stderr=True)
    bar = Progress(TextColumn(f"[bold]train {options.phase}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[losses]}"), console=console,
                   disable=not (progress and rank == 0 and console.is_terminal))
    with bar:
        task = bar.add_task("train", total=options.steps, completed=step, losses="")
        while step < options.steps:
            t = _tensors(sampler.sample(options.batch // world, images), device)
            with autocast:
                losses = _losses(runner, t, options)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            step += 1
            shown = " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items())
            bar.update(task, completed=step, losses=shown)
            if step % options.checkpoint_every == 0 or step == options.steps:
                if rank == 0:
                    model.eval()
                    validation = validate(model, val_batch, device)
                    model.train()
                    with atomic_output(checkpoint) as tmp:
                        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                    "options": asdict(replace(options, config=options.config))}, tmp)
                    save_generator(model, out / "model", {"phase": options.phase, "step": str(step)})
                    line = {"step": step, "seconds": round(time.perf_counter() - started, 1),
                            **{k: round(float(v.detach()), 5) for k, v in losses.items()}, **{k: round(v, 3) for k, v in validation.items()}}
                    print(json.dumps(line), file=log, flush=True)
                    if not math.isfinite(float(total.detach())):
                        raise FloatingPointError(f"training diverged at step {step}: {shown}")
    if log:
        log.close()
    return TrainReport(step, time.perf_counter() - started, validation, out / "model.safetensors")


def _fit_basis(model: Generator, clips: list[PreparedClip], val_batch: PairBatch, out: Path, device: torch.device,
               options: TrainOptions) -> TrainReport:
    from reenact.train.basis import BASIS_RULES, fit_motion_basis

    started = time.perf_counter()
    if not model.config.n_pose:
        model = model.with_head_pose()
    fit = fit_motion_basis(model, clips, seed=options.seed + 1)
    model.eval()
    validation = validate(model, val_batch, device)
    save_generator(model, out / "model", {"phase": "basis", "basis_rules": ",".join(BASIS_RULES)})
    line = {"step": 0, "seconds": round(time.perf_counter() - started, 1), **{f"fit_{k}": round(v, 3) for k, v in fit.items()},
            **{k: round(v, 3) for k, v in validation.items()}}
    with open(out / "train.log", "a") as log:
        print(json.dumps(line), file=log)
    return TrainReport(0, time.perf_counter() - started, validation, out / "model.safetensors")


def _fit_gain(model: Generator, clips: list[PreparedClip], val_batch: PairBatch, out: Path, device: torch.device,
              options: TrainOptions) -> TrainReport:
    from reenact.train.gain import fit_edit_ceiling, fit_edit_gain

    started = time.perf_counter()
    model.eval()
    with open(out / "train.log", "a") as log:
        distance = None
        if options.identity_budget is not None:
            from reenact.evaluate import IdentityMeter

            try:
                distance = IdentityMeter().distance
            except ImportError as exc:
                raise ValueError(f"--identity-budget needs dlib: pip install 'reenact[eval]' ({exc})") from None
        write = lambda line: print(json.dumps(line), file=log, flush=True)  # noqa: E731
        fit_edit_ceiling(model, clips, log=write)
        fit_edit_gain(model, clips, seed=options.seed + 23, log=write, distance=distance,
                      budget=options.identity_budget or 0.0)
        validation = validate(model, val_batch, device)
        print(json.dumps({"step": 0, "seconds": round(time.perf_counter() - started, 1),
                          **{k: round(v, 3) for k, v in validation.items()}}), file=log)
    save_generator(model, out / "model", {"phase": "gain"})
    return TrainReport(0, time.perf_counter() - started, validation, out / "model.safetensors")
