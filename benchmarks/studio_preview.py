"""`reenact studio`'s preview latency at 640x480: from a slider's release to the edited frame (target: 300 ms).

Two measures on the same clip (a 640x480 synthetic clip of scikit-image's astronaut, or CLIP), after it is opened
and tracked once:
- server: the studio's preview of one frame (alignment, generator, paste-back, as ``reenact.studio.clip`` runs it)
  plus its PNG encoding (OpenCV, fastest compression, as the page writes it); median over --repeat frames;
- browser: `reenact studio CLIP` started as a user starts it, driven in Chromium by Playwright: the AU12 value is
  typed into its slider's box and the box left (the slider's release), and the clock stops when the page shows the
  new preview image, loaded; median over --repeat releases (needs playwright and a chromium on PATH).
Usage: python benchmarks/studio_preview.py [CLIP] [--repeat 15] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402

from reenact.editing import AUEdit, ExpressionTarget  # noqa: E402
from reenact.studio.clip import StudioClip  # noqa: E402


def server_side(clip_path: Path, repeat: int) -> tuple[float, list[float]]:
    """(seconds to open and track, per-preview seconds including the PNG encoding)."""
    import cv2

    started = time.perf_counter()
    clip = StudioClip(clip_path)
    opened = time.perf_counter() - started
    try:
        clip.preview(0, ExpressionTarget((AUEdit("AU12", 1.0, True),)))  # loads the generator once, as the page does
        times = []
        for k in range(repeat):
            index = (k * 7) % len(clip)
            target = ExpressionTarget((AUEdit("AU12", 0.5 + (k % 5) * 0.5, True),))
            started = time.perf_counter()
            preview = clip.preview(index, target)
            cv2.imencode(".png", preview.after[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            times.append(time.perf_counter() - started)
        return opened, times
    finally:
        clip.close()


def in_browser(clip_path: Path, repeat: int) -> list[float] | None:
    """Release-to-image times in Chromium, or None without Playwright or Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "reenact", "studio", str(clip_path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = server.stdout.readline()
        url = line.split()[2]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#status:has-text('face in')", timeout=120_000)
            box = page.locator("#slider-AU12 input[type=number]")
            times = []
            for k in range(repeat + 1):
                old = page.locator("#after img").first.get_attribute("src")
                started = time.perf_counter()
                box.fill(f"{0.5 + (k % 5) * 0.5:.1f}")
                box.press("Tab")  # leaving the box is the slider's release
                page.wait_for_function(
                    "old => { const i = document.querySelector('#after img');"
                    " return i && i.src !== old && i.complete && i.naturalWidth > 0; }", arg=old, timeout=30_000)
                if k:  # the first one warms the page up
                    times.append(time.perf_counter() - started)
            browser.close()
        return times
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", help="a face clip (default: a 3 s 640x480 synthetic one)")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-browser", action="store_true", help="the server-side measure only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(args.clip) if args.clip else write_synthetic_clip(Path(folder) / "astronaut.mp4", 3, (640, 480))
        opened, server = server_side(clip, args.repeat)
        print(f"{clip.name}: opened and tracked in {opened:.1f} s")
        print(f"server: preview + PNG, median {statistics.median(server) * 1000:.0f} ms "
              f"(min {min(server) * 1000:.0f}, max {max(server) * 1000:.0f}; {len(server)} frames)")
        browser = None if args.no_browser else in_browser(clip, args.repeat)
        if browser:
            print(f"browser: slider release to preview shown, median {statistics.median(browser) * 1000:.0f} ms "
                  f"(min {min(browser) * 1000:.0f}, max {max(browser) * 1000:.0f}; {len(browser)} releases)")
        elif not args.no_browser:
            print("browser: not measured (needs playwright and chromium)")


if __name__ == "__main__":
    main()
