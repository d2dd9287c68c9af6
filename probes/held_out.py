"""The arguments and the running of the probes that measure a model on a prepared dataset's held-out people."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def held_out_parser(description: str) -> argparse.ArgumentParser:
    """A parser with DATASET, --split, --model and --json (what each such probe takes)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", type=Path, help="folder written by reenact prepare")
    parser.add_argument("--split", type=Path, required=True, help="a training run's split.json (its validation people)")
    parser.add_argument("--model", help="generator name in models/ or path (default: models/default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def run_held_out(description: str, measure: Callable[[Path, list[str], str | None, int], object], count: str,
                 default: int, help: str) -> None:
    """Parse the held-out probe arguments plus the integer option ``count``, run ``measure(dataset, validation
    people, model name, count)`` on 2 threads, and write what it returns to --json if asked."""
    import torch

    parser = held_out_parser(description)
    parser.add_argument(count, type=int, default=default, help=help)
    args = parser.parse_args()
    torch.set_num_threads(2)
    people = json.loads(args.split.read_text())["validation"]
    rows = measure(args.dataset, people, args.model, getattr(args, count.lstrip("-")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
