"""The generator: a motion step that warps the face, then a texture step for what warping cannot make.

Motion: from the source face's landmarks (in the aligned crop), its AUs and the target AUs, a network predicts a
dense backward flow at low resolution (``flow_size``); the flow is upsampled and applied to the crop at whatever
resolution it has, so a large face keeps its detail. The flow is the difference of the field for the target and
the field for the source's own AUs, so an empty edit is exactly no motion.

Texture: on the warped face (at ``texture_size``) and the AU change, a small U-Net outputs an RGB residual and an
attention mask; the residual is added where the mask says, scaled by how large the edit is (none for no edit).

Flow convention: ``out(x) = source(x + flow(x))`` in grid_sample's normalised coordinates ([-1, 1] spans the crop,
pixel centres at ``(i + 0.5) / S * 2 - 1``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

AU_SCALE = 5.0  # AU intensities (0-5) enter the networks divided by this


@dataclass(frozen=True)
class GeneratorConfig:
    """Every size that defines a generator; stored as JSON beside its weights."""

    n_aus: int = 17
    n_landmarks: int = 478
    flow_size: int = 64
    texture_size: int = 128
    motion_width: int = 512
    motion_channels: int = 48
    texture_channels: int = 32
    max_flow: float = 0.35

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        return cls(**json.loads(text))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


class MotionNet(nn.Module):
    """(landmarks, source AUs, target AUs) -> backward flow (B, 2, flow_size, flow_size).

    Two parts: a learned deformation field per AU in the aligned crop's frame, weighted by how much that AU
    changes (the part a linear model of the data already explains, and exactly zero for no change), and a
    network that corrects it for this face's shape and the AUs' starting intensities.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.basis = nn.Parameter(torch.zeros(config.n_aus, 2, config.flow_size, config.flow_size))
        c = config.motion_channels
        self.encode = nn.Sequential(
            nn.Linear(config.n_landmarks * 2 + 2 * config.n_aus, config.motion_width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.motion_width, config.motion_width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.motion_width, c * 8 * 8),
        )
        ups = []
        size, channels = 8, c
        while size < config.flow_size:
            # Halve the channels as the resolution doubles: the fine levels only refine a smooth field.
            out = channels if size < 16 else max(channels // 2, 8)
            ups += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _conv(channels, out)]
            size, channels = size * 2, out
        self.decode = nn.Sequential(*ups, nn.Conv2d(channels, 2, 3, padding=1))

    def field(self, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
        x = torch.cat([landmarks.flatten(1), source_aus / AU_SCALE, target_aus / AU_SCALE], dim=1)
        h = self.encode(x).view(-1, self.config.motion_channels, 8, 8)
        return torch.tanh(self.decode(h)) * self.config.max_flow

    def forward(self, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
        # Both corrections in one batch: their difference is exactly zero when target == source.
        n = landmarks.shape[0]
        both = self.field(
            torch.cat([landmarks, landmarks]), torch.cat([source_aus, source_aus]), torch.cat([target_aus, source_aus])
        )
        linear = torch.einsum("bk,kchw->bchw", (target_aus - source_aus) / AU_SCALE, self.basis)
        return linear + both[:n] - both[n:]


class TextureNet(nn.Module):
    """(warped face, target AUs, AU change) -> RGB residual in [-1, 1] and attention mask in [0, 1]."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        c, n = config.texture_channels, config.n_aus
        self.enc1 = nn.Sequential(_conv(3 + 2 * n, c), _conv(c, c))
        self.enc2 = nn.Sequential(nn.AvgPool2d(2), _conv(c, 2 * c), _conv(2 * c, 2 * c))
        self.enc3 = nn.Sequential(nn.AvgPool2d(2), _conv(2 * c, 4 * c), _conv(4 * c, 4 * c))
        self.mid = nn.Sequential(nn.AvgPool2d(2), _conv(4 * c, 4 * c), _conv(4 * c, 4 * c))
        self.dec3 = nn.Sequential(_conv(8 * c, 4 * c), _conv(4 * c, 2 * c))
        self.dec2 = nn.Sequential(_conv(4 * c, 2 * c), _conv(2 * c, c))
        self.dec1 = nn.Sequential(_conv(2 * c, c), nn.Conv2d(c, 4, 3, padding=1))

    def forward(self, warped: torch.Tensor, target_aus: torch.Tensor, source_aus: torch.Tensor):
        b, _, h, w = warped.shape
        aus = torch.cat([target_aus, target_aus - source_aus], dim=1) / AU_SCALE
        x = torch.cat([warped * 2 - 1, aus[:, :, None, None].expand(b, aus.shape[1], h, w)], dim=1)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        m = F.interpolate(self.mid(e3), scale_factor=2, mode="bilinear", align_corners=False)
        d3 = F.interpolate(self.dec3(torch.cat([m, e3], 1)), scale_factor=2, mode="bilinear", align_corners=False)
        d2 = F.interpolate(self.dec2(torch.cat([d3, e2], 1)), scale_factor=2, mode="bilinear", align_corners=False)
        out = self.dec1(torch.cat([d2, e1], 1))
        return torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])


def normalise(points, size: int):
    """Crop pixels (OpenCV: pixel centres at integers) -> grid_sample's [-1, 1] coordinates (numpy or torch)."""
    return (points + 0.5) / size * 2 - 1


def denormalise(points, size: int):
    """grid_sample's [-1, 1] coordinates -> crop pixels."""
    return (points + 1) / 2 * size - 0.5


def sample_at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Values of a (B, C, h, w) field at (B, N, 2) normalised points: (B, N, C)."""
    return F.grid_sample(field, points[:, :, None, :], mode="bilinear", align_corners=False).squeeze(-1).transpose(1, 2)


def identity_grid(size: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """grid_sample's sampling grid that returns the input unchanged: (batch, size, size, 2), x then y."""
    axis = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], dim=-1).expand(batch, size, size, 2)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``flow`` (B, 2, h, w), upsampled to the image's size."""
    b, _, h, w = image.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    grid = identity_grid(h, b, image.device, image.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def edit_strength(source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
    """0 for no AU change, rising to 1 for a change of about one intensity step: gates the texture step."""
    return torch.tanh((target_aus - source_aus).abs().sum(dim=1) * 1.5)[:, None, None, None]


class Generator(nn.Module):
    """Warp, then texture. Images are (B, 3, H, W) floats in [0, 1]; H = W, any size."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        self.motion = MotionNet(config)
        self.texture = TextureNet(config)

    def forward(
        self, crop: torch.Tensor | None, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
        flow: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``landmarks``: (B, 478, 2) in normalised crop coordinates. ``flow``: a precomputed (e.g. time-smoothed)
        flow to use instead of the motion net's own. ``crop=None`` runs the motion step only."""
        if flow is None:
            flow = self.motion(landmarks, source_aus, target_aus)
        if crop is None:
            return {"flow": flow}
        warped = warp(crop, flow)
        size = self.config.texture_size
        small = warped if warped.shape[-1] == size else F.interpolate(warped, size=(size, size), mode="area")
        residual, mask = self.texture(small, target_aus, source_aus)
        mask = mask * edit_strength(source_aus, target_aus)
        if residual.shape[-1] != crop.shape[-1]:
            residual = F.interpolate(residual, size=crop.shape[-2:], mode="bilinear", align_corners=False)
            mask = F.interpolate(mask, size=crop.shape[-2:], mode="bilinear", align_corners=False)
        out = (warped + mask * residual).clamp(0, 1)
        return {"output": out, "warped": warped, "flow": flow, "mask": mask, "residual": residual}
