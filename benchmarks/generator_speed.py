"""Frames per second of the generator alone (motion, splat, warp, texture) on aligned crops, CPU or GPU.

Measured side by side in one run: float32 against bfloat16 autocast (GPU only), batch 1 against a large batch,
for each model named. Inputs are random crops and landmarks with an AU12 +2 edit: the generator's work does not
depend on what the face looks like (no step is skipped but for an empty edit, which this is not).
Usage: python benchmarks/generator_speed.py [--model default ...] [--size 256] [--batch 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from reenact.model.io import load_generator


def _inputs(size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    crop = torch.rand(batch, 3, size, size, generator=generator)
    # Landmarks spread over the middle of the crop, as a face's are; the flow's cost depends on their count only.
    landmarks = (torch.rand(batch, 478, 2, generator=generator) - 0.5) * 1.2
    source = torch.rand(batch, 17, generator=generator)
    target = source.clone()
    target[:, 8] += 2.0  # AU12 (AU_NAMES[8]): a real edit, so the texture step runs
    return tuple(t.to(device) for t in (crop, landmarks, source, target))


@torch.no_grad()
def frames_per_second(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], bf16: bool, seconds: float = 3.0) -> float:
    device = inputs[0].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with autocast:
        for _ in range(3):
            model(*inputs)
        sync()
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model(*inputs)
            runs += 1
        sync()
    return runs * inputs[0].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["default"])
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for model_name in args.model:
        model = load_generator(model_name, device)
        for batch in (1, args.batch):
            inputs = _inputs(args.size, batch, device)
            fp32 = frames_per_second(model, inputs, bf16=False)
            row = {"model": model_name, "device": name, "size": args.size, "batch": batch, "fps_fp32": round(fp32, 1)}
            if device.type == "cuda":
                bf16 = frames_per_second(model, inputs, bf16=True)
                row |= {"fps_bf16": round(bf16, 1), "bf16_over_fp32": round(bf16 / fp32, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
