"""The paste-back's frame-sized half on a torch device (a GPU): a ``PastePlan``'s change warped into the frame's box
and added, as ``reenact.face.align`` does it with OpenCV on the CPU. The plan itself (the colour match and the
change on the crop, a few hundred pixels a side) is worked out on the CPU either way; only the frame's box around the
face goes to the device and back.

OpenCV's warps read the source at positions rounded to 1/32 pixel; these read it at the exact positions, so the two
differ by up to about a level where the change has a sharp edge (two where the frame's own detail moves with a
flow)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from reenact.face.align import PastePlan


def _grid(fwd: np.ndarray, width: int, height: int, box: tuple[int, int], device: torch.device) -> torch.Tensor:
    """grid_sample's grid (1, height, width, 2) that reads the crop's box (box_height, box_width) at fwd @ (u, v, 1)
    for each frame box pixel (u, v). With align_corners, -1 and 1 are the first and last pixels' centres: OpenCV's
    pixel coordinates."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float64),
                          torch.arange(width, device=device, dtype=torch.float64), indexing="ij")
    f = torch.as_tensor(fwd, dtype=torch.float64, device=device)
    x = f[0, 0] * u + f[0, 1] * v + f[0, 2]
    y = f[1, 0] * u + f[1, 1] * v + f[1, 2]
    box_height, box_width = box
    return torch.stack([2 * x / (box_width - 1) - 1, 2 * y / (box_height - 1) - 1], dim=-1)[None].float()


def _read(image: np.ndarray, grid: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    """(h, w[, C]) float32 ``image`` read at ``grid``: (H, W[, C]) on the grid's device."""
    planes = torch.from_numpy(np.ascontiguousarray(image)).to(grid.device)
    planes = planes[None, None] if planes.ndim == 2 else planes.permute(2, 0, 1)[None]
    read = F.grid_sample(planes, grid, mode=mode, padding_mode=padding, align_corners=True)[0]
    return read[0] if image.ndim == 2 else read.permute(1, 2, 0)


def apply_plan_on(device: torch.device | str) -> Callable[[np.ndarray, PastePlan], np.ndarray]:
    """A ``paste_back(apply=...)`` that warps and adds on ``device``."""
    device = torch.device(device)

    @torch.inference_mode()
    def apply(roi: np.ndarray, plan: PastePlan) -> np.ndarray:
        height, width = roi.shape[:2]
        grid = _grid(plan.fwd, width, height, plan.mask.shape, device)
        frame = torch.from_numpy(np.ascontiguousarray(roi)).to(device).float()
        change = _read(plan.diff, grid, "bicubic", "zeros")  # outside the crop's box: no change
        mask = _read(plan.mask, grid, "bilinear", "zeros")
        if plan.original is not None:
            detail = frame - _read(plan.original, grid, "bicubic", "border")
            kept = 1.0
            if plan.replaced is not None:
                replaced = _read(plan.replaced, grid, "bilinear", "zeros")[..., None]
                change = change - detail * replaced
                kept = 1.0 - replaced
            if plan.flow is not None:  # the frame's detail moves with the crop's content (``_frame_moves``)
                moves = _read(plan.flow, grid, "bilinear", "zeros")
                v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                                      torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
                at = torch.stack([2 * (u + moves[..., 0]) / (width - 1) - 1,
                                  2 * (v + moves[..., 1]) / (height - 1) - 1], dim=-1)[None]
                moved = F.grid_sample(detail.permute(2, 0, 1)[None], at, mode="bicubic", padding_mode="border",
                                      align_corners=True)[0].permute(1, 2, 0)
                change = change + (moved - detail) * (kept * moves[..., 2:])
        # frame + mask * change, rounded half to even and saturated to 0..255, as OpenCV's add does it
        out = (frame + change * mask[..., None]).round_().clamp_(0, 255).to(torch.uint8)
        return out.cpu().numpy()

    return apply
