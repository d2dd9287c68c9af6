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


def write_synthetic_clip(path: Path, seconds: float, size: tuple[int, int] = (320, 240), fps: int = 25) -> Path:
    import skimage.data

    width, height = size
    head = skimage.data.astronaut()[0:300, 80:380]
    scale = 0.9 * height / head.shape[0]
    rate = 16000
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        samples_per_frame = rate // fps
        for i in range(int(seconds * fps)):
            t = i / fps
            angle = 4 * math.sin(2 * math.pi * t / 3.0)  # a slow nod
            matrix = cv2.getRotationMatrix2D((head.shape[1] / 2, head.shape[0] / 2), angle, scale)
            matrix[:, 2] += (width / 2 - scale * head.shape[1] / 2 + 6 * math.sin(t), height / 2 - scale * head.shape[0] / 2)
            image = cv2.warpAffine(head, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            n = np.arange(i * samples_per_frame, (i + 1) * samples_per_frame)
            tone = (0.1 * np.sin(2 * np.pi * 220 * n / rate)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, int(n[0]), Fraction(1, rate)
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    write_synthetic_clip(args.out, args.seconds, (w, h), args.fps)
