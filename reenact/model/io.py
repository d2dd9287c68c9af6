"""Generator weights on disk: ``NAME.safetensors`` beside ``NAME.json`` (its GeneratorConfig)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from reenact.errors import ModelFileError
from reenact.model.networks import Generator, GeneratorConfig

# A source checkout's models/, else where a wheel installs them (pyproject's data-files).
_CHECKOUT_MODELS = Path(__file__).resolve().parent.parent.parent / "models"
MODELS_DIR = _CHECKOUT_MODELS if _CHECKOUT_MODELS.is_dir() else Path(sys.prefix) / "share" / "reenact" / "models"
MODEL_ENV = "REENACT_MODEL"
DEFAULT_MODEL = "default"


def model_paths(name_or_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, config) for a model name in models/ or a path with or without its .safetensors suffix."""
    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        path = MODELS_DIR / f"{path}.safetensors" if len(path.parts) == 1 and not path.exists() else path.with_suffix(".safetensors")
    return path, path.with_suffix(".json")


def save_generator(model: Generator, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """Write weights (safetensors) and config (JSON) atomically; returns the weights' path."""
    from safetensors.torch import save_file

    from reenact.files import atomic_output

    weights, config = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
    with atomic_output(config) as tmp:
        tmp.write_text(model.config.to_json() + "\n")
    return weights


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> object:
    """A ``torch.save`` file (training checkpoint, critic, snapshots) read without unpickling arbitrary objects: only
    tensors, numbers, strings and containers of them load (``weights_only``); anything else is a ModelFileError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: file not found") from None
    except Exception as exc:  # pickle.UnpicklingError (a payload beyond plain data), a damaged zip, ...
        reason = " ".join(str(exc).split())[:200]
        raise ModelFileError(f"{path}: not a plain checkpoint of tensors, refused ({type(exc).__name__}: {reason})") from None


def load_generator(
    name_or_path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> Generator:
    """Load a generator: an explicit name or path, else ``$REENACT_MODEL``, else models/default."""
    from safetensors.torch import load_file

    choice = name_or_path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    weights, config = model_paths(choice)
    if not weights.is_file() or not config.is_file():
        raise ModelFileError(f"model {choice!r} not found (looked for {weights} and {config})")
    try:
        model = Generator(GeneratorConfig(**json.loads(config.read_text())))
        model.load_state_dict(load_file(str(weights), device=str(device)))
    except (ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model {weights} cannot be loaded: {' '.join(str(exc).split())[:200]}") from None
    return model.to(device).eval()
