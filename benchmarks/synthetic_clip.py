"""Make a synthetic talking-head-like clip of any length from scikit-image's astronaut (public domain).

The face drifts and nods slowly so the tracker and the aligner have real work; a sine tone is the audio.
Usage: python benchmarks/synthetic_clip.py OUT.mp4 --seconds 600 [--size 320x240] [--fps 25]
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


MARK_SIZE = 16  # pixels: the white square in the top-left corner of a marked frame, far from the face
MARK_HZ = 1000  # the beep that starts with each marked frame


def write_synthetic_clip(path: Path, seconds: float, size: tuple[int, int] = (320, 240), fps: int = 25,
                         marks_every: float | None = None) -> Path:
    """``marks_every``: every so many seconds, a frame with a white square in its corner and a one-frame beep that
    starts with it, so an output's audio can be checked against its video (``marks``)."""
    import skimage.data

    width, height = size
    # The head is the photo's 300-pixel square from column 80, scaled to 0.9 of the frame's height; the whole photo is
    # sampled, so the frame around it is the photo's own (mirroring the square at its edges put a second, mirrored
    # astronaut at the frame's side) and only a strip above her hair, where the photo ends, repeats its top row.
    photo, left, side = skimage.data.astronaut(), 80, 300
    scale = 0.9 * height / side
    rate = 16000
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        samples_per_frame = rate // fps
        for i in range(int(seconds * fps)):
            t = i / fps
            angle = 4 * math.sin(2 * math.pi * t / 3.0)  # a slow nod
            matrix = cv2.getRotationMatrix2D((left + side / 2, side / 2), angle, scale)
            matrix[:, 2] += (width / 2 - scale * side / 2 - left + 6 * math.sin(t), height / 2 - scale * side / 2)
            image = cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
            marked = marks_every is not None and i % round(marks_every * fps) == 0
            if marked:
                image[:MARK_SIZE, :MARK_SIZE] = 255
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            n = np.arange(i * samples_per_frame, (i + 1) * samples_per_frame)
            tone = (0.1 * np.sin(2 * np.pi * (MARK_HZ if marked else 220) * n / rate)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, int(n[0]), Fraction(1, rate)
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    return path


def marks(path: Path) -> tuple[list[float], list[float]]:
    """A marked clip's (or its edit's) mark times: by its video (frames with the white corner) and by its audio (the
    beeps' starts), in seconds."""
    seen: list[float] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            corner = frame.to_ndarray(format="rgb24")[2:MARK_SIZE - 2, 2:MARK_SIZE - 2]
            if corner.mean() > 200:
                seen.append(float(frame.time))
    heard: list[float] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().mean(axis=0)
            # The beep against the hum by the spacing of sign changes: about rate / 2000 samples against rate / 440.
            changes = np.flatnonzero(np.diff(np.signbit(samples)))
            close = np.flatnonzero(np.diff(changes) < frame.sample_rate / (MARK_HZ + 220))
            if len(close):
                onset = float(frame.time) + float(changes[close[0]]) / frame.sample_rate
                if not heard or onset - heard[-1] > 0.5:
                    heard.append(onset)
    return seen, heard


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--marks-every", type=float, help="seconds between audio/video sync marks")
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    write_synthetic_clip(args.out, args.seconds, (w, h), args.fps, args.marks_every)
