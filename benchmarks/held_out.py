"""The arguments of the benchmarks that measure a model on a prepared dataset's held-out people."""

from __future__ import annotations

import argparse
from pathlib import Path


def held_out_parser(description: str) -> argparse.ArgumentParser:
    """A parser with DATASET, --split, --model and --json (what each such benchmark takes)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", type=Path, help="folder written by reenact prepare")
    parser.add_argument("--split", type=Path, required=True, help="a training run's split.json (its validation people)")
    parser.add_argument("--model", help="generator name in models/ or path (default: models/default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser
