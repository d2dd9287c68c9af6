"""What a warp cannot show, painted where the motion uncovers or covers it: the inside of a mouth opened wider than
the source's, and the lid of an eye that closes.

A warp can only move what the face shows.
- Opening a closed mouth stretched the line where the lips meet (or the teeth of a mouth already open) into the
  gap, which read as a pink or tall-toothed mouth. With the mouth remapped rigidly (``close_gaps(...,
  rigid_mouth=True)``: the upper half of what the source shows moves with the upper lip, the lower half with the
  lower lip), the band between them is new, and it is painted: a dark cavity, the upper teeth under the upper lip
  and a fainter edge of lower teeth above the lower lip; where the source's mouth was already open (its own teeth
  or dark moving with the lips), the cavity alone.
- Closing an eye squeezed the eye to nothing and stretched the lashes and the crease down over it: a grey smear
  that reenact's reader took for a half-open eye (a +3 blink read as 0.39 of the request). Where the lids meet,
  the lid is painted in the skin colour just below the eye, shaded a little towards a dark lash line where the lids
  meet. An upper lid brought more than 0.6 of the way down is painted likewise, down to its edge (the stretched lashes
  read as a see-through, streaked band); where the person's video shows such a lid, the face memory puts theirs.

Nothing here is learned. The mouth's colours are the face's own cheek colour times ratios measured in open mouths
of the training people (median over 46 people of the darkest fifth and the brightest tenth of the pixels between
the lips, 128 px crops); the sizes are set by eye on validation faces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reenact.model.coords import normalise

# Row ranges and sizes below are read as plain numbers with .item(): they index, they are never differentiated.

# Cheeks and chin: the face's own colour under its own light, which the interior is painted relative to.
SKIN_LANDMARKS = (205, 425, 18, 200, 50, 280)
CAVITY = (0.46, 0.28, 0.31)  # the darkest fifth between open lips, over the cheeks' colour
TEETH = (1.15, 1.12, 1.05)  # times the cheeks' luminance: near-neutral, a little brighter than the skin
UPPER_TEETH = 0.2  # how far the upper teeth show below the upper lip, as a share of the mouth's width
LOWER_TEETH = 0.1  # the lower teeth's edge above the lower lip, likewise
UPPER_SHARE, LOWER_SHARE = 0.6, 0.3  # at most these shares of the gap's height
FULL_OPENING = 0.06  # a new band this tall (a share of the mouth's width) is painted in full, a narrower one less
# A source mouth open by this much at a column (its half-gap, a share of the mouth's width) already shows what lies
# under its lips, teeth or dark, and that moves with them: the new band between is cavity. Teeth painted there too
# stood below a smiling still's own teeth as a second, grey slab (a laughing driver onto `KatieHill`).
SHOWN = 0.03


def skin_colour(crop: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Mean colour (B, 3) of small patches of cheek and chin of (B, 3, H, W) crops; ``landmarks`` normalised."""
    small = F.interpolate(crop, size=(32, 32), mode="area")  # each sample then averages a patch, not a pixel
    points = landmarks[:, list(SKIN_LANDMARKS)]
    return F.grid_sample(small, points[:, :, None], mode="bilinear", align_corners=False)[..., 0].mean(-1)


def _within(t: torch.Tensor, full: float, soft: float) -> torch.Tensor:
    """1 where |t - 0.5| <= full, falling to 0 over ``soft`` beyond it."""
    return (1 - ((t - 0.5).abs() - full) / soft).clamp(0, 1)


def _centres(first: int, last: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel rows (or columns) ``first``-``last`` of ``size`` in normalised units, on ``like``'s device and dtype."""
    return normalise(torch.arange(first, last + 1, device=like.device, dtype=like.dtype), size)


def paint_mouth_interior(image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, upper: torch.Tensor,
                         lower: torch.Tensor, held: torch.Tensor, ends: torch.Tensor,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (B, 3, H, W) with the new part of the mouth painted, and how much of each pixel is paint
    (B, 1, H, W). Per column of the image (normalised units, each (B, W)): ``upper`` and ``lower``, where the lips'
    inner edges land; ``held``, how far the source's own content reaches in from each edge (half the source's gap
    there). ``ends``: (B, 2), the mouth's left and right ends. The colours are taken from the cheeks of ``crop``, the
    source (B, 3, H, W), at its ``landmarks`` (normalised). Where the mouth is no wider open than the source's,
    nothing changes (and no pixel is paint)."""
    b, _, h, w = image.shape
    px = 2.0 / h
    top, bottom = upper + held, lower - held  # (B, W): the band no source content covers
    if not bool((bottom > top).any()):
        return image, image.new_zeros(b, 1, h, w)
    # Only the rows the mouth spans are worked on.
    first = int(((upper.amin() + 1) / px).floor().clamp(0, h - 1).item())
    last = int(((lower.amax() + 1) / px).ceil().clamp(0, h - 1).item())
    y = _centres(first, last, h, image)[None, :, None]  # (1, L, 1)
    xs = _centres(0, w - 1, w, image)
    left, right = ends[:, :1], ends[:, 1:]
    width = (right - left).clamp(min=1e-6)
    u = ((xs - left) / width)[:, None]  # (B, 1, W): 0 to 1 across the mouth
    up, low, tp, bt = upper[:, None], lower[:, None], top[:, None], bottom[:, None]
    alpha = ((y - tp) / px).clamp(0, 1) * ((bt - y) / px).clamp(0, 1) * ((u > 0) & (u < 1))
    # A mouth barely opened shows the lips' inner edges, not a cavity: the paint comes in as the new band widens.
    alpha = alpha * ((bt - tp) / (FULL_OPENING * width[:, None])).clamp(0, 1)
    # The cavity is darkest in the middle of the gap; the teeth are brightest at the front, where they face the light.
    depth = (torch.minimum(y - up, low - y) / ((low - up) / 2).clamp(min=px)).clamp(0, 1)
    skin = skin_colour(crop.float(), landmarks)
    cavity = skin[:, :, None, None] * skin.new_tensor(CAVITY)[:, None, None] * (1 - 0.35 * depth[:, None])
    luminance = skin @ skin.new_tensor([0.299, 0.587, 0.114])
    teeth = (luminance[:, None] * skin.new_tensor(TEETH)).clamp(max=0.95)[:, :, None, None]
    teeth = teeth * (0.75 + 0.25 * (1 - (u - 0.5).abs() / 0.4).clamp(0, 1))[:, None]
    gap = low - up
    unshown = 1 - (held[:, None] / (SHOWN * width[:, None])).clamp(0, 1)  # (B, 1, W)
    upper_band = (((UPPER_TEETH * width[:, None]).minimum(UPPER_SHARE * gap) - (y - up)) / px).clamp(0, 1)
    upper_band = upper_band * _within(u, 0.22, 0.12) * unshown
    lower_band = 0.6 * (((LOWER_TEETH * width[:, None]).minimum(LOWER_SHARE * gap) - (low - y)) / px).clamp(0, 1)
    lower_band = lower_band * _within(u, 0.18, 0.12) * unshown
    layer = torch.lerp(cavity, teeth, upper_band[:, None])
    layer = torch.lerp(layer, teeth * 0.8, lower_band[:, None])
    return _paint_rows(image, layer, alpha[:, None], first, last)


def _paint_rows(image: torch.Tensor, layer: torch.Tensor, alpha: torch.Tensor, first: int, last: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer`` over rows ``first``-``last`` of ``image`` by ``alpha`` (B, 1, rows, W); and the alpha at full size."""
    alpha = alpha.to(image.dtype)
    rows = image[:, :, first:last + 1]
    painted = torch.lerp(rows, layer.to(image.dtype), alpha)
    pad = (0, 0, first, image.shape[2] - 1 - last)
    return torch.cat([image[:, :, :first], painted, image[:, :, last + 1:]], dim=2), F.pad(alpha, pad)


LID_SAMPLE = 0.25  # the lid's colour is read this far below the ring under the eye, as a share of the eye's width
LASH_WIDTH = 0.07  # half-width of the lash line, as a share of the eye's width (at least a pixel)
LASH_SPAN = 0.5  # the lash line runs full this far either side of the eye's middle (a share of its width), then fades
LASH_DARKNESS = 0.7  # the lash line's centre keeps this much less of the lid's colour
LID_SHADE = 0.15  # the lid darkens by this share from the ring down to the lash line
LID_FADE = 0.3  # the lid fades in over this share of the way from the ring above the eye to the lash line
PART_FADE = 0.35  # the same for a lid only part of the way down
CLOSED_FROM, CLOSED_BY = 0.9, 0.99  # the lid fades in between these shares of the way closed
LOWERED_FROM, LOWERED_BY = 0.6, 0.85  # ...or as the upper lid comes down between these shares of the eye's opening


def paint_closed_lids(image: torch.Tensor, ring: torch.Tensor, edge: torch.Tensor, meet: torch.Tensor,
                      under: torch.Tensor, closed: torch.Tensor, lowered: torch.Tensor, ends: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (B, 3, H, W) with the lid painted over what the warp squeezed or drew out, where an eye closes or
    its upper lid comes far down, and how much of each pixel is paint (B, 1, H, W). Per eye and column of the image
    (normalised units, (B, eyes, W)): ``ring``, where the skin line above the upper lid lands; ``edge``, where the
    upper lid's edge lands; ``meet``, where the lower lid's edge lands (the upper one meets it there when closed);
    ``under``, where the skin line under the eye lands (the lid's colour is read below it: above the eye may be
    brow); ``closed``, how far the eye is closed (0 open as in the source, 1 shut); ``lowered``, how far the upper
    lid came down, as a share of the source eye's opening. ``ends``: (B, eyes, 2), the eyes' corners. An eye
    narrowed less than that is left as it is: the warp draws a squint (the lower lid up) well, but a lid brought
    far down as its lashes and crease drawn out over the eye, a streaked, see-through band (a
    laughing driver onto held-out speakers)."""
    b, _, h, w = image.shape
    px = 2.0 / h
    weight = ((closed - CLOSED_FROM) / (CLOSED_BY - CLOSED_FROM)).clamp(0, 1)
    weight = weight * weight * (3 - 2 * weight)  # (B, eyes, W)
    drawn_out = ((lowered - LOWERED_FROM) / (LOWERED_BY - LOWERED_FROM)).clamp(0, 1)
    drawn_out = drawn_out * drawn_out * (3 - 2 * drawn_out)
    # The lid reaches down to its edge, where the lashes are; shut, to where the lids meet (the paint as it was). A
    # lid only part of the way down is taller at the eye's corners, and is faded in further from the ring above:
    # with the shut lid's narrow taper and short fade it showed as a flat patch with square sides.
    shut = weight
    meet = torch.lerp(edge, meet, shut)
    weight = torch.maximum(weight, drawn_out)
    if not bool((weight > 0).any()):
        return image, image.new_zeros(b, 1, h, w)
    xs = _centres(0, w - 1, w, image)
    width = (ends[..., 1:] - ends[..., :1]).clamp(min=1e-6)  # (B, eyes, 1)
    u = (xs - ends[..., :1]) / width
    weight = weight * ((u > 0) & (u < 1))
    # The lid's colour per column: the skin just below the eye, averaged along the row.
    below = torch.stack([xs.expand_as(under), (under + LID_SAMPLE * width).clamp(-1, 1)], dim=-1)  # (B, eyes, W, 2)
    lid = F.grid_sample(image, below, mode="bilinear", align_corners=False)  # (B, 3, eyes, W)
    span = max(1, int(round((0.15 * width.mean()).item() / (2.0 / w))))
    lid = F.avg_pool2d(lid, (1, 2 * span + 1), stride=1, padding=(0, span), count_include_pad=False)
    first = int(((ring.amin() + 1) / px).floor().clamp(0, h - 1).item())
    last = int(((meet.amax() + 1) / px + 1 + (LASH_WIDTH * width).amax().item() / px).ceil().clamp(0, h - 1).item())
    y = _centres(first, last, h, image)[None, None, :, None]  # (1, 1, L, 1)
    top, low = ring[:, :, None], meet[:, :, None]  # (B, eyes, 1, W)
    lash_half = (LASH_WIDTH * width[..., None]).clamp(min=px)
    depth = ((y - top) / (low - top).clamp(min=px)).clamp(0, 1)
    # Faded in from the ring, so the lid's flat colour joins the skin above it; down to the lash line's lower edge.
    fade = torch.lerp(torch.full_like(shut, PART_FADE), torch.full_like(shut, LID_FADE), shut)[:, :, None]
    inside = (depth / fade).clamp(0, 1) * ((low + lash_half - y) / px).clamp(0, 1)
    lash = (1 - (y - low).abs() / lash_half).clamp(0, 1) * _within(u, LASH_SPAN, 0.1)[:, :, None]
    shade = (1 - LID_SHADE * depth) * (1 - LASH_DARKNESS * lash)  # (B, eyes, L, W)
    taper = torch.lerp(_within(u, 0.25, 0.25), _within(u, 0.4, 0.1), shut)
    alpha = inside * (weight * taper)[:, :, None]  # (B, eyes, L, W)
    # The eyes do not overlap: each column belongs to one at most, so their layers add.
    alpha_sum = alpha.sum(1)[:, None]  # (B, 1, L, W)
    layer = (lid[:, :, :, None] * (shade * alpha)[:, None]).sum(2) / alpha_sum.clamp(min=1e-6)  # (B, 3, L, W)
    return _paint_rows(image, layer, alpha_sum.clamp(max=1), first, last)
