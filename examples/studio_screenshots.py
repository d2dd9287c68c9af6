"""The README's screenshots of `reenact studio`: each step a person takes, on a GRID clip (CC BY 4.0) and scikit-image's
astronaut (public domain), in headless Chromium (Debian's `chromium`) driven by Playwright.

Starts `reenact studio` on a free port, opens CLIP by upload, smiles it (AU12), adds the happy preset and renders;
drives the astronaut with DRIVING in a second tab and uploads a text file in a third. Saves each step's part of the
page as a small PNG (at most 900 pixels wide, 256 colours) in OUTDIR: studio_open.png, studio_edit.png,
studio_render.png, studio_transfer.png, studio_error.png.
Usage: python examples/studio_screenshots.py CLIP DRIVING [OUTDIR]
       (e.g. ../shared/data/train/grid_s1/bbaf2n.mp4 ../shared/data/train/grid_s1/bbaf4p.mp4; default OUTDIR examples/)
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright

WIDTH = 900  # the saved screenshots' width at most


def _save(page: Page, selectors: list[str], path: Path) -> None:
    """The smallest part of the page that holds every one of ``selectors``, as a small PNG."""
    boxes = [page.locator(s).first.bounding_box() for s in selectors]
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    x0 = min(b["x"] for b in boxes) - 8
    y0 = min(b["y"] for b in boxes) - 8
    x1 = max(b["x"] + b["width"] for b in boxes) + 8
    y1 = max(b["y"] + b["height"] for b in boxes) + 8
    clip = {"x": max(x0 + scroll[0], 0), "y": max(y0 + scroll[1], 0), "width": x1 - x0, "height": y1 - y0}
    image = Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True))).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")


def main() -> None:
    clip, driving = Path(sys.argv[1]), Path(sys.argv[2])
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "reenact", "studio", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        url = server.stdout.readline().split()[2]
        with sync_playwright() as playwright:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#upload input[type=file]").set_input_files(str(clip))
            page.wait_for_selector("#status:has-text('face in')", timeout=120_000)
            page.locator("#frame input[type=number]").fill("40")
            page.locator("#frame input[type=number]").press("Tab")
            page.wait_for_selector("#timing:has-text('frame 40')")
            page.wait_for_timeout(500)
            _save(page, ["#upload", "#status", "#frame", "#before", "#after"], out / "studio_open.png")

            old = page.locator("#after img").first.get_attribute("src")
            page.locator("#slider-AU12 input[type=number]").fill("2.5")
            page.locator("#slider-AU12 input[type=number]").press("Tab")
            page.wait_for_function("old => document.querySelector('#after img').src !== old", arg=old)
            page.wait_for_timeout(500)
            _save(page, ["#before", "#after", "#timing", "#mode", "#slider-AU01", "#slider-AU45", "#slider-AU26"],
                  out / "studio_edit.png")

            page.locator("#preset input").click()
            page.get_by_role("option", name="happy").click()
            page.wait_for_timeout(1000)
            page.locator("#render").click()
            page.locator("#files a").first.wait_for(timeout=180_000)
            page.locator("#result video").wait_for()
            page.wait_for_timeout(1500)
            page.locator("#result").scroll_into_view_if_needed()
            _save(page, ["#render", "#command", "#original", "#result", "#files"], out / "studio_render.png")

            with tempfile.TemporaryDirectory() as folder:
                # Transfer, in a second tab (at the same time as the first): the astronaut (public domain) driven by
                # the driving clip, previewed at the driving clip's middle.
                import skimage.data

                astronaut = Path(folder) / "astronaut.png"
                Image.fromarray(skimage.data.astronaut()).save(astronaut)
                other = browser.new_page(viewport={"width": 1280, "height": 900})
                other.goto(url)
                other.locator("#upload input[type=file]").set_input_files(str(astronaut))
                other.wait_for_selector("#status:has-text('face in')", timeout=120_000)
                other.get_by_role("tab", name="Transfer").click()
                other.locator("#driving input[type=file]").set_input_files(str(driving))
                other.wait_for_selector("#driving-status:has-text('Driving clip')", timeout=120_000)
                other.wait_for_selector("#timing:has-text('preview in')", timeout=60_000)
                other.wait_for_timeout(1500)
                other.locator("#before").scroll_into_view_if_needed()
                _save(other, ["#before", "#after", "#timing", "#driving", "#driving-status", "#driving-time"],
                      out / "studio_transfer.png")
                other.close()

                other = browser.new_page(viewport={"width": 1280, "height": 900})
                other.goto(url)
                notes = Path(folder) / "notes.txt"
                notes.write_text("not a video\n" * 50)
                other.locator("#upload input[type=file]").set_input_files(str(notes))
                toast = other.get_by_text("notes.txt: not a video or image file").first
                toast.wait_for(timeout=60_000)
                other.wait_for_timeout(500)
                _save(other, ["#upload", "#status", "[data-testid='toast-body']"], out / "studio_error.png")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
