"""`reenact studio` in a real browser: Chromium (Debian's `chromium`) driven by Playwright, against the command as a
user starts it. One clip is opened, previewed, edited and rendered; the result is checked with PyAV.

Set REENACT_STUDIO_SHOTS=DIR to also save a screenshot of each step there (the README's come from this)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CLIP = "grid_s1/bbaf2n.mp4"  # a GRID clip (CC BY 4.0): 75 frames, 360x288, with audio
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is required under CI (apt-get install chromium)")
    pytest.skip("no Chromium here (apt-get install chromium)")


def _needs(module: str):
    """The module, or a skip (a failure under CI, which installs the studio and test extras)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is required under CI (pip install -e '.[test,studio]')")
        pytest.skip(f"{module} is not installed (pip install -e '.[test,studio]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(require_face_model: Path) -> Iterator[str]:
    """`reenact studio` started as a user starts it, on a free port; its address."""
    _needs("gradio")
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "reenact", "studio", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("reenact studio: http") or process.poll() is not None:
                break
        assert line.startswith(f"reenact studio: http://127.0.0.1:{port}"), line + process.stdout.read()
        yield line.split()[2]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = _needs("playwright.sync_api")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("REENACT_STUDIO_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"studio-{name}.png"), full_page=False)


def _image(page, selector: str) -> np.ndarray:
    """The image a page's gr.Image shows, fetched as the browser fetched it."""
    import cv2

    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src).body()
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _wait_new_image(page, selector: str, old: str | None, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        src = page.locator(f"{selector} img").first.get_attribute("src") if page.locator(
            f"{selector} img").count() else None
        if src and src != old:
            return src
        time.sleep(0.1)
    raise AssertionError(f"{selector} did not update")


def _mouth_box(frame: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns around the mouth (MediaPipe's lip landmarks, grown by half the mouth's width)."""
    from reenact.face.tracker import FaceTracker

    with FaceTracker(video_mode=False) as tracker:
        face = tracker(frame, 0.0)
    lips = face.xy[[61, 291, 0, 17, 13, 14]]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    pad = 0.5 * (x1 - x0)
    return slice(int(y0 - pad), int(y1 + pad)), slice(int(x0 - pad), int(x1 + pad))


def _move_slider(page, elem_id: str, value: float) -> None:
    """Drag a slider's range input to ``value`` with the mouse (the release sends it)."""
    page.locator(f"#{elem_id} input[type=range]").scroll_into_view_if_needed()
    box = page.locator(f"#{elem_id} input[type=range]").bounding_box()
    low, high = (float(page.locator(f"#{elem_id} input[type=range]").get_attribute(k)) for k in ("min", "max"))
    x = box["x"] + box["width"] * (value - low) / (high - low)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(x, y, steps=5)
    page.mouse.up()


def test_studio_edit_render_download(studio: str, browser, shared_data: Path, tmp_path: Path) -> None:
    import av

    clip = shared_data / "train" / CLIP
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(studio)
    _shot(page, "1-start")
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    page.wait_for_selector("#status:has-text('face in 75 of 75 frames')", timeout=60_000)
    assert page.get_by_text("AU12 lip corner puller (smile)").count() == 1  # the AUs' names label the sliders
    _shot(page, "2-opened")

    # Scrub to a frame, uncheck the tracked-face drawing, and take the unedited preview.
    src = page.locator("#after img").first.get_attribute("src")
    page.locator("#frame input[type=number]").fill("40")
    page.locator("#frame input[type=number]").press("Tab")
    src = _wait_new_image(page, "#after", src)
    page.wait_for_selector("#timing:has-text('frame 40')")
    plain = _image(page, "#after")
    assert plain.shape == (288, 360, 3)

    # AU12 up: the mouth changes, the rest of the frame does not.
    _move_slider(page, "slider-AU12", 3.0)
    src = _wait_new_image(page, "#after", src)
    smile = _image(page, "#after")
    assert float(page.locator("#slider-AU12 input[type=number]").input_value()) > 1.5
    rows, cols = _mouth_box(plain)
    diff = np.abs(smile.astype(int) - plain.astype(int)).max(axis=2)
    assert diff[rows, cols].mean() > 3.0, diff[rows, cols].mean()
    upper = diff[: rows.start - (rows.stop - rows.start)]  # above the mouth by its box's height: eyes, brows, hair
    assert upper.mean() < 0.2 and (upper == 0).mean() > 0.95, (upper.mean(), (upper == 0).mean())
    _shot(page, "3-smile")

    # A preset on top, then render the whole clip and download it with its AU CSV.
    page.locator("#preset input").click()
    page.get_by_role("option", name="happy").click()
    _wait_new_image(page, "#after", src)
    _shot(page, "4-preset")
    page.locator("#render").click()
    link = page.locator("#files a").first
    link.wait_for(timeout=120_000)
    page.locator("#result video").wait_for(timeout=30_000)
    page.locator("#command").get_by_text("--preset happy").wait_for()
    _shot(page, "5-rendered")
    names = page.locator("#files").inner_text().replace("\n", "")
    assert "bbaf2n_edited.mp4" in names and "bbaf2n_edited.csv" in names
    with page.expect_download() as download:
        page.locator("#files a[href$='.mp4']").first.click()
    video = tmp_path / "result.mp4"
    download.value.save_as(video)

    with av.open(str(clip)) as source, av.open(str(video)) as result:
        assert result.streams.audio, "the audio was dropped"
        before = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
        after = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
    assert len(after) == len(before) and after[0].shape == before[0].shape
    changed = np.abs(after[40].astype(int) - before[40].astype(int)).max(axis=2)
    assert changed[rows, cols].mean() > 3.0 + changed[:40].mean()  # the mouth, well beyond the codec's noise
    csv_link = page.locator("#files a[href$='.csv']").first.get_attribute("href")
    csv = page.request.get(csv_link).text()
    assert csv.startswith("frame,timestamp") and len(csv.splitlines()) == 76
    page.close()


def test_studio_says_what_is_wrong_with_a_non_video(studio: str, browser, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n" * 50)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a second tab, while the first's server runs
    page.goto(studio)
    page.locator("#upload input[type=file]").set_input_files(str(notes))
    page.get_by_text(re.compile(r"notes\.txt: not a video or image file")).first.wait_for(timeout=30_000)
    # The status line says it too: no clip is open (it kept the clip before's line, and Render asked for a clip).
    page.locator("#status").get_by_text(re.compile(r"not a video or image file")).wait_for(timeout=10_000)
    _shot(page, "6-error")
    page.close()


def test_studio_without_gradio_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from reenact.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as on a core install: `import gradio` fails
    assert main(["studio"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reenact: error: ") and "pip install 'reenact[studio]'" in lines[0]


def test_slider_labels_and_groups() -> None:
    from reenact.face.aus import AU_NAMES
    from reenact.studio.controls import REGIONS, au_label

    assert au_label("AU12") == "AU12 lip corner puller (smile)"
    assert list(REGIONS) == ["Brows", "Eyes", "Cheeks and nose", "Mouth"]
    assert sorted(au for aus in REGIONS.values() for au in aus) == sorted(AU_NAMES)  # each AU once
    assert "AU12" in REGIONS["Mouth"] and "AU01" in REGIONS["Brows"] and "AU45" in REGIONS["Eyes"]


def test_edit_controls_ask_for_what_the_sliders_show() -> None:
    from reenact.errors import OptionError
    from reenact.face.aus import AU_NAMES
    from reenact.studio.controls import ADD, SET, EditControls

    values = [0.0] * len(AU_NAMES)
    values[AU_NAMES.index("AU12")] = 2.0
    target = EditControls(tuple(values), ADD, preset="happy", strength=0.5, start=1.0, end=2.0).target()
    assert [(e.au, e.value, e.relative) for e in target.edits] == [("AU12", 2.0, True)]
    assert (target.preset, target.strength, target.start, target.end) == ("happy", 0.5, 1.0, 2.0)
    command = EditControls(tuple(values)).command("talk.mp4", "out.mp4")
    assert command == "reenact edit talk.mp4 -o out.mp4 --au AU12=+2.0"
    # Set mode: sliders start at the frame's readings; only the moved ones are edits, set to their value.
    readings = tuple(float(i % 3) for i in range(len(AU_NAMES)))
    moved = list(readings)
    moved[AU_NAMES.index("AU26")] = 4.0
    target = EditControls(tuple(moved), SET, readings).target()
    assert [(e.au, e.value, e.relative) for e in target.edits] == [("AU26", 4.0, False)]
    assert EditControls(readings, SET, readings).is_empty()
    with pytest.raises(OptionError, match="ends"):
        EditControls(tuple(values), start=2.0, end=1.0).target()


def test_cancelled_render_writes_nothing(shared_data: Path, require_face_model: Path, tmp_path: Path) -> None:
    import threading

    from reenact.editing import ExpressionTarget
    from reenact.studio.clip import RenderCancelled, StudioClip

    clip = StudioClip(shared_data / "train" / CLIP)
    try:
        preview = clip.preview(40, ExpressionTarget(preset="surprised"))
        assert preview.face and preview.after.shape == preview.before.shape == (288, 360, 3)
        assert np.abs(preview.after.astype(int) - preview.before).max() > 20
        cancel = threading.Event()
        seen: list[int] = []

        def progress(done: int, total: int) -> None:
            seen.append(done)
            if done == 10:
                cancel.set()

        with pytest.raises(RenderCancelled):
            clip.render(tmp_path / "out.mp4", ExpressionTarget(preset="happy"), progress=progress, cancel=cancel)
        assert 10 <= max(seen) < 75 and list(tmp_path.iterdir()) == []  # no output, not even a partial one
    finally:
        clip.close()
    assert not clip.folder.exists()


def test_too_long_a_clip_is_refused_in_words(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reenact.errors import InputError
    from reenact.studio import clip as studio_clip

    monkeypatch.setattr(studio_clip, "MAX_SECONDS", 1.0)  # the GRID clip is 3 s long
    with pytest.raises(InputError, match=r"bbaf2n.mp4: 3 s long; the studio opens clips up to 1 s"):
        studio_clip.check_clip(shared_data / "train" / CLIP)
