"""The face's FACS regions over MediaPipe's landmarks: which landmarks each AU may move.

FACS defines each AU by the muscle that makes it, so an AU moves only the landmarks of its region (brows, eyes,
cheeks, nose, mouth and jaw). The motion basis is fitted inside these regions (``reenact.train.basis``), a transfer
by the driving face's landmarks carries only the chosen AUs' regions (``reenact.retarget``), and the texture step
paints only where the edited AUs act (``reenact.model.networks``).
"""

from __future__ import annotations

import numpy as np

from reenact.face.aus import AU_NAMES

MESH = 468  # landmarks of the mesh proper; the 10 iris points follow gaze, not expression

# MediaPipe mesh landmarks used to place the regions: eye corners, nose tip.
EYE_CORNERS = ((33, 133), (362, 263))
NOSE_TIP = 1

# The face's outline at its sides, at the eyes' height (by the ears): no expression moves it. MediaPipe's outline
# points there slide with the cheeks (happy at strength 2 moved them 5-7 pixels of a 256-pixel crop), and a warp
# through them dragged the sideburn and the ear with the cheek: an S-shaped step in a held-out speaker's (`LP-d8`)
# hairline by his ear. Expressions leave the ears and hair where they are. More of the outline held also held back
# what moves near it: from the temples to the mouth's height, the transfers' brows; from the eyes to the nose, the
# mouth's edits (AU15, AU17, AU26 as MediaPipe finds them; docs/model-log.md).
FACE_SIDES = (454, 234)

# Which region each AU moves (FACS: the muscle behind each AU, and what it visibly displaces).
AU_REGIONS: dict[str, tuple[str, ...]] = {
    "AU01": ("brows",), "AU02": ("brows",), "AU04": ("brows",),
    "AU05": ("eyes",), "AU07": ("eyes",), "AU45": ("eyes",),
    "AU06": ("cheeks", "eyes"), "AU09": ("cheeks", "nose"), "AU10": ("cheeks", "mouth"),
    "AU12": ("mouth",), "AU14": ("mouth",), "AU15": ("mouth",), "AU17": ("mouth",), "AU20": ("mouth",),
    "AU23": ("mouth",), "AU25": ("mouth",), "AU26": ("mouth",),
}  # fmt: skip


def face_regions(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over the landmarks of an aligned face (normalised crop coordinates, y down).

    Placed relative to the face's own proportions: u is the distance from the eyes down to the nose tip.
    """
    xy = np.asarray(landmarks, dtype=np.float64)
    eye_centres = [xy[list(pair)].mean(axis=0) for pair in EYE_CORNERS]
    eye_y = float(np.mean([c[1] for c in eye_centres]))
    nose = xy[NOSE_TIP]
    u = float(nose[1] - eye_y)
    y = xy[:, 1]
    near_eye = np.min([np.hypot(*(xy - c).T) for c in eye_centres], axis=0) < 0.45 * u
    return {
        "brows": y < eye_y + 0.15 * u,  # brows, forehead and upper lids
        "eyes": near_eye,
        "cheeks": (y > eye_y - 0.2 * u) & (y < nose[1] + 0.3 * u),  # from the eyes to the nose's base
        "nose": (y < nose[1] + 0.3 * u) & (np.abs(xy[:, 0] - nose[0]) < 0.6 * u),
        "mouth": y > eye_y + 0.55 * u,  # below the cheekbones: nose base, lips, mouth corners, chin, jaw
    }


def region_mask(landmarks: np.ndarray, aus: tuple[str, ...] = AU_NAMES) -> np.ndarray:
    """(len(aus), n_landmarks) bool: which landmarks each AU may move (never the irises, which follow gaze)."""
    regions = face_regions(landmarks)
    mask = np.stack([np.any([regions[r] for r in AU_REGIONS[name]], axis=0) for name in aus])
    mask[:, MESH:] = False
    return mask
