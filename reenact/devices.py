"""Which torch device a job runs on. The name is checked without importing torch (the CLI checks its arguments
first); whether the device is here is asked of torch when the model loads."""

from __future__ import annotations

import re

from reenact.errors import DeviceError, OptionError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PRECISIONS = ("auto", "float32")


def check_device_name(device: str) -> str:
    """``device`` if it names a device reenact runs on; OptionError otherwise."""
    if not _DEVICE.match(device):
        raise OptionError(f"--device takes auto (the GPU when there is one), cpu, cuda or cuda:N (mps on a Mac), "
                          f"not {device!r}")
    return device


def pick_device(device: str = "auto") -> str:
    """'auto': the GPU when there is one, else the CPU. A device that is not here is a DeviceError that says so."""
    check_device_name(device)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "this PyTorch is the CPU-only build" if torch.version.cuda is None else "torch sees no GPU"
            raise DeviceError(f"--device {device}: no CUDA device here ({build}); use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here, numbered "
                              f"from 0")
    if device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: no Apple GPU (MPS) here; use --device cpu or auto")
    return device


def check_precision(precision: str) -> str:
    """``precision`` if reenact knows it; OptionError otherwise."""
    if precision not in PRECISIONS:
        raise OptionError(f"--precision takes auto (bfloat16 where the hardware computes it natively) or float32, "
                          f"not {precision!r}")
    return precision


def texture_dtype(device: str, precision: str = "auto"):
    """The dtype the texture step's convolutions run in on ``device`` (a picked one: cpu, cuda[:N], mps), or None
    for float32. 'auto': bfloat16 where the hardware has it natively (a CUDA GPU that supports it, else float16; a
    CPU with AVX-512 BF16 or AMX, where oneDNN's bfloat16 convolutions take 0.6 of float32's time), else None."""
    check_precision(precision)
    if precision == "float32":
        return None
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu":
        try:  # the check torch's own oneDNN dispatch makes; absent from builds without oneDNN
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return torch.bfloat16 if native else None
    return None
