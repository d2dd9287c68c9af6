"""The whole `reenact edit --preset happy` command against a plain PyAV decode+encode of the same clip with the same
encoder settings, alternated in one run: the frame rate of each and their ratio, on the device the edit runs on.

The edit is the command a user runs, in a fresh process: start-up, the first pass (tracking, the face memory), the
edit and the encode, the audio copied. The transcode decodes, converts to yuv420p and encodes with libx264 at reenact's
default crf and preset. On a GPU machine this is issue 23's figure (the edit at 0.8x the transcode or better); name
the card with it (printed).
Usage: python benchmarks/edit_vs_transcode.py [CLIP] [--repeat 2] [--device auto]
(default CLIP: a 20 s 1280x720 synthetic clip)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402
from track_vs_transcode import plain_transcode  # noqa: E402

from reenact.devices import pick_device  # noqa: E402
from reenact.video import probe  # noqa: E402


def whole_edit(clip: Path, out: Path, device: str) -> float:
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "reenact", "edit", str(clip), "-o", str(out), "--preset", "happy",
                    "--device", device], check=True, capture_output=True)
    return time.perf_counter() - started


def transcode(clip: Path, out: Path) -> float:
    started = time.perf_counter()
    plain_transcode(clip, out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    import torch

    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or write_synthetic_clip(Path(tmp) / "clip.mp4", 20.0, (1280, 720))
        info = probe(clip)
        edits, plains = [], []
        for _ in range(args.repeat):
            plains.append(transcode(clip, Path(tmp) / "plain.mp4"))
            edits.append(whole_edit(clip, Path(tmp) / "edit.mp4", device))
    frames = info.frame_count or 0
    edit, plain = min(edits), min(plains)
    print(f"clip: {clip.name}, {info.width}x{info.height}, {frames} frames; edit on {device} ({card})")
    print(f"plain decode+encode:          {plain:6.2f} s ({frames / plain:6.1f} fps)")
    print(f"reenact edit, whole command:  {edit:6.2f} s ({frames / edit:6.1f} fps)")
    print(f"edit frame rate / transcode's: {plain / edit:.2f}x")


if __name__ == "__main__":
    main()
