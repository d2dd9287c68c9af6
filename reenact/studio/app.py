"""The studio's page: a Gradio Blocks app over ``reenact.studio.clip`` (open, preview, render) and
``reenact.studio.controls`` (what the controls ask for). Each browser tab has its own clip (``gr.State``)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import html
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import numpy as np

from reenact.errors import OptionError, ReenactError
from reenact.face.aus import AU_NAMES
from reenact.studio.clip import MAX_MEGABYTES, MAX_SECONDS, StudioClip, check_clip, copy_name
from reenact.studio.controls import (
    ADD, ADD_RANGE, NO_PRESET, PRESET_CHOICES, REGIONS, SET, SET_RANGE, EditControls, TransferControls, au_info,
    au_label, generator_options, parse_aus,
)

FACE_CHOICES = ("largest", "1st from the left", "2nd from the left", "3rd from the left", "4th from the left")
INTRO = f"""# reenact studio
**1.** Open a video or image with a face (MP4, MOV, MKV, WebM, PNG or JPG; up to {MAX_MEGABYTES} MB and
{MAX_SECONDS:.0f} s): it is tracked once. **2.** Pick a frame with the slider and move the AU sliders (or a preset, or
a driving clip in *Transfer*): the preview shows that frame edited. **3.** Render the whole clip and download it."""


_CORNERS = ("AU12", "AU14", "AU15")
# The AU sliders' page layout: three columns of about the same height, each region's sliders under its name.
SLIDER_COLUMNS: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] = (
    (("Brows", REGIONS["Brows"]), ("Eyes", REGIONS["Eyes"])),
    (("Cheeks and nose", REGIONS["Cheeks and nose"]),
     ("Mouth: corners", tuple(au for au in REGIONS["Mouth"] if au in _CORNERS))),
    (("Mouth: lips and jaw", tuple(au for au in REGIONS["Mouth"] if au not in _CORNERS)),),
)


class Session:
    """One browser tab's state: its clip, its driving clip and the render it may cancel."""

    def __init__(self) -> None:
        self.clip: StudioClip | None = None
        self.driving = None  # (DrivingTrack, its name, its path)
        self.cancel = threading.Event()

    def close(self) -> None:
        if self.clip is not None:
            self.clip.close()
            self.clip = None


def _one_line(error: BaseException) -> str:
    """The CLI's one-line message (``reenact: error: ...`` without the prefix)."""
    return " ".join(str(error).split()) or type(error).__name__


def page_errors(fn: Callable) -> Callable:
    """Show reenact's errors in the page, in the CLI's words; nothing reaches the server as a crash."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ReenactError, OSError, ValueError) as exc:
            raise gr.Error(html.escape(_one_line(exc)), duration=None) from exc

    return wrapped


@contextlib.contextmanager
def _named(path: str) -> Iterator[None]:
    """Errors about an uploaded file name it as the user knows it, not by the server's copy of it."""
    try:
        yield
    except (ReenactError, OSError, ValueError) as exc:
        raise gr.Error(html.escape(_one_line(exc).replace(str(path), Path(path).name)), duration=None) from exc


def _in_thread(work: Callable[[], object], progress: gr.Progress, counter: list, what: str) -> object:
    """Run ``work`` in a thread and show ``counter`` ([done, total]) on the page's progress bar meanwhile, with the
    frame rate and the time left."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reenact-studio") as pool:
        future = pool.submit(work)
        while True:
            try:
                return future.result(timeout=0.25)
            except concurrent.futures.TimeoutError:
                done, total = counter
                if not total:
                    continue
                elapsed = time.perf_counter() - started
                fps = done / elapsed if elapsed > 0 else 0.0
                eta = (total - done) / fps if fps > 0 else float("nan")
                progress((done, total), desc=f"{what}: frame {done} of {total}, {fps:.1f} fps, {eta:.0f} s left",
                         unit="frames")


def _face_choice(label: str) -> str | int:
    return "largest" if label == FACE_CHOICES[0] else FACE_CHOICES.index(label) - 1


def build_app(input: str | None = None, model: str | None = None) -> gr.Blocks:
    """The studio's Blocks app; ``input``: a video or image to open when a tab loads."""
    from reenact.api import GeneratorOptions, TrackingOptions, pick_device
    from reenact.studio.clip import loaded_generator

    own_texture = float(loaded_generator(model, None, pick_device("auto")).config.texture_strength)

    with gr.Blocks(title="reenact studio", delete_cache=(600, 3600), analytics_enabled=False) as app:
        session = gr.State(None, delete_callback=lambda s: s.close() if s is not None else None)
        baseline = gr.State(None)
        active = gr.State("edit")
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label=f"Video or image (up to {MAX_MEGABYTES} MB, {MAX_SECONDS:.0f} s)",
                                 file_count="single", type="filepath", elem_id="upload")
                face = gr.Dropdown(list(FACE_CHOICES), value=FACE_CHOICES[0], label="Face to edit",
                                   info="where there are several; choosing another tracks the clip again")
                show_face = gr.Checkbox(True, label="Draw the tracked face (landmarks and crop) on the source frame")
                status = gr.Markdown("Open a clip to start.", elem_id="status")
            with gr.Column(scale=3):
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame", info="scrub to the frame to preview",
                                  interactive=False, elem_id="frame")
                with gr.Row():
                    before = gr.Image(label="Source frame", type="filepath", interactive=False,
                                      elem_id="before", height=360)
                    after = gr.Image(label="Preview (edited)", type="filepath", interactive=False,
                                     elem_id="after", height=360)
                timing = gr.Markdown("", elem_id="timing")

        with gr.Tabs():
            with gr.Tab("Edit", id="edit") as edit_tab:
                with gr.Row():
                    mode = gr.Radio([ADD, SET], value=ADD, label="Sliders", elem_id="mode",
                                    info="add: change the face's own AU by this much in every frame; set: the AU's "
                                         "intensity (0-5) in every frame (sliders start at this frame's reading)")
                    preset = gr.Dropdown(list(PRESET_CHOICES), value=NO_PRESET, label="Expression preset",
                                         elem_id="preset")
                    strength = gr.Slider(0, 2, value=1, step=0.05, label="Preset strength", elem_id="strength")
                sliders: dict[str, gr.Slider] = {}
                with gr.Row():
                    for column in SLIDER_COLUMNS:
                        with gr.Column(min_width=260):
                            for region, aus in column:
                                gr.Markdown(f"**{region}**")
                                for au in aus:
                                    sliders[au] = gr.Slider(*ADD_RANGE, value=0, step=0.1, label=au_label(au),
                                                            info=au_info(au), elem_id=f"slider-{au}")
                with gr.Row():
                    start = gr.Textbox("", label="Edit from (s)", placeholder="empty: the clip's start",
                                       info="e.g. 1.5", elem_id="start")
                    end = gr.Textbox("", label="Edit until (s)", placeholder="empty: the clip's end", info="e.g. 2.5",
                                     elem_id="end")
                    ramp = gr.Number(0.3, label="Ramp (s)", info="fade in and out at the ends of the range")
                    reset = gr.Button("Reset every control", elem_id="reset")
            with gr.Tab("Transfer", id="transfer") as transfer_tab:
                gr.Markdown("Give the face the expressions of another face (the driving clip), frame by frame.")
                with gr.Row():
                    with gr.Column():
                        driving = gr.File(label="Driving clip (a video with a face)", type="filepath",
                                          elem_id="driving")
                        driving_status = gr.Markdown("No driving clip yet.", elem_id="driving-status")
                    with gr.Column():
                        scale = gr.Slider(0, 2, value=1, step=0.05, label="Scale of the transferred motion")
                        relative = gr.Radio(["relative", "absolute"], value="relative", label="Mode",
                                            info="relative: the driving face's change from its own rest; absolute: "
                                                 "its expression as it is (here by its AUs: the 'aus' motion)")
                        motion = gr.Radio(["landmarks", "aus"], value="landmarks", label="Motion",
                                          info="landmarks: the driving face's own motion (relative here); aus: the "
                                               "model's motion for its AU readings")
                        pose = gr.Checkbox(False, label="Also turn the head as the driving head turns")
                driving_time = gr.Slider(0, 1, value=0, step=0.04, label="Driving clip time to preview (s)",
                                         info="for a still image, which the transfer animates along the driving "
                                              "clip; a video's frame meets the driving clip's at its own time",
                                         elem_id="driving-time")
                transfer_aus = gr.CheckboxGroup([au_label(au) for au in AU_NAMES],
                                                value=[au_label(au) for au in AU_NAMES], label="AUs to transfer")
            with gr.Tab("AU curves", id="curves"):
                curves = gr.Image(label="The clip's AU intensities (0-5) over time, as `reenact au --plot` draws them",
                                  type="filepath", interactive=False, elem_id="curves")

        with gr.Row():
            texture = gr.Slider(0, 2, value=own_texture, step=0.05, label="Texture strength",
                                info=f"the texture step's share (the model's own: {own_texture:g}; 0: warp only)")
            memory = gr.Checkbox(True, label="Use the person's own mouths and eyes from the clip (face memory)")
        with gr.Row():
            render = gr.Button("Render the whole clip", variant="primary", elem_id="render")
            cancel = gr.Button("Cancel the render", elem_id="cancel")
        command = gr.Markdown("", elem_id="command")
        with gr.Row():
            original = gr.Video(label="Source", interactive=False, elem_id="original", height=320)
            result = gr.Video(label="Result", interactive=False, elem_id="result", height=320)
            files = gr.File(label="Download (the result and its AU CSV)", file_count="multiple", interactive=False,
                            elem_id="files")

        slider_list = [sliders[au] for au in AU_NAMES]
        edit_inputs = [mode, baseline, preset, strength, start, end, ramp, *slider_list]
        transfer_inputs = [transfer_aus, scale, relative, motion, pose, driving_time]
        generator_inputs = [texture, memory]

        def edit_controls(mode_, baseline_, preset_, strength_, start_, end_, ramp_, *values) -> EditControls:
            return EditControls(tuple(float(v) for v in values), mode_, baseline_, preset_ or NO_PRESET,
                                float(strength_), seconds(start_, "from"), seconds(end_, "until"),
                                float(ramp_ if ramp_ is not None else 0.3))

        def seconds(text: str | None, what: str) -> float | None:
            text = (text or "").strip()
            if not text:
                return None
            try:
                return float(text)
            except ValueError:
                raise OptionError(f"'edit {what}' takes a time in seconds such as 1.5, not {text!r}") from None

        def transfer_controls(aus_, scale_, relative_, motion_, pose_, _time=None) -> TransferControls:
            return TransferControls(parse_aus(aus_), float(scale_), relative_ == "relative", motion_, bool(pose_))

        def generator(texture_, memory_) -> GeneratorOptions:
            strength_ = None if abs(float(texture_) - own_texture) < 1e-6 else float(texture_)
            return generator_options(model, strength_, bool(memory_))

        def split(args: tuple) -> tuple[list, list, list]:
            n, m = len(edit_inputs), len(transfer_inputs)
            return list(args[:n]), list(args[n:n + m]), list(args[n + m:])

        def job(state: Session, tab: str, args: tuple):
            """(target, editor kwargs, generator options) for the active tab's controls."""
            edits, transfers, gen = split(args)
            options = generator(*gen)
            if tab == "transfer":
                if state.driving is None:
                    return None, {}, options
                target, kwargs = transfer_controls(*transfers).editor_options(state.driving[0])
                if state.clip is not None and state.clip.info.is_image:
                    kwargs["at"] = float(transfers[-1])
                return target, kwargs, options
            return edit_controls(*edits).target(), {}, options

        all_inputs = [*edit_inputs, *transfer_inputs, *generator_inputs]

        def show(state: Session, index: int, tab: str, draw: bool, args: tuple):
            clip = state.clip
            target, kwargs, options = job(state, tab, args)
            t = clip.times[int(np.clip(index, 0, len(clip) - 1))]
            if target is None:  # the Transfer tab before a driving clip is opened
                image = clip.frame(int(index)).image
                source = clip.tracked(int(index)) if draw else image
                return (png(clip, source), png(clip, image),
                        f"frame {int(index)} at {t:.2f} s: open a driving clip to preview the transfer")
            preview = clip.preview(int(index), target, options, **kwargs)
            source = clip.tracked(int(index)) if draw else preview.before  # drawn only when it is sent
            where = (f"the image at the driving clip's {kwargs['at']:.2f} s" if "at" in kwargs
                     else f"frame {int(index)} at {t:.2f} s")
            note = (f"{where}; preview in {preview.seconds * 1000:.0f} ms" if preview.face
                    else f"{where}: no face in this frame")
            return png(clip, source), png(clip, preview.after), note

        def png(clip: StudioClip, image: np.ndarray) -> str:
            """The image as a PNG file for the page: OpenCV's fastest compression writes a 640x480 frame about 6x
            faster than the PIL encoding Gradio does for an array (a third of a preview's time on 2 cores)."""
            import cv2

            folder = clip.folder / "previews"
            folder.mkdir(exist_ok=True)
            path = folder / f"{time.monotonic_ns()}-{threading.get_ident()}.png"
            cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            for old in sorted(folder.glob("*.png"))[:-16]:  # Gradio has its own copy once it is sent
                old.unlink(missing_ok=True)
            return str(path)

        @page_errors
        def open_clip(path, face_label, draw, state, *args, progress=gr.Progress()):
            if state is not None:
                state.close()
            if not path:
                return None, gr.update(), None, None, None, "Open a clip to start.", ""
            state = Session()
            counter = [0, None]

            def opened() -> StudioClip:
                def count(done: int, total: int | None) -> None:
                    counter[0], counter[1] = done, total
                return StudioClip(path, TrackingOptions(face=_face_choice(face_label)), count)

            progress(0, desc="tracking the face")
            try:
                with _named(path):
                    state.clip = clip = _in_thread(opened, progress, counter, "tracking")
            except gr.Error as exc:
                # The clip open before is closed: the page says so (an error raised here would leave its status
                # line standing under the error, and Render then asked for a clip).
                gr.Warning(exc.message, duration=None, title="Error")
                empty = gr.update(value=0, maximum=1, interactive=False)
                return None, empty, None, None, None, f"**Error:** {exc.message}. Open a clip to start.", ""
            plot = Path(clip.folder) / "au_curves.png"
            clip.plot_aus(plot)
            found = int(clip.track.found.sum())
            name = Path(path).name
            kind = "image" if clip.info.is_image else (f"{len(clip)} frames, {clip.info.width}x{clip.info.height}, "
                                                      f"{clip.info.duration or 0:.1f} s")
            text = f"**{html.escape(name)}**: {kind}; face in {found} of {len(clip)} frames."
            source, edited, note = show(state, 0, "edit", draw, args)
            slider = gr.update(minimum=0, maximum=max(len(clip) - 1, 1), value=0, step=1, interactive=len(clip) > 1)
            return state, slider, source, edited, str(plot), text, note

        open_outputs = [session, frame, before, after, curves, status, timing]
        upload.upload(open_clip, [upload, face, show_face, session, *all_inputs], open_outputs)
        face.input(open_clip, [upload, face, show_face, session, *all_inputs], open_outputs)

        @page_errors
        def refresh(state, index, tab, draw, *args):
            if state is None or state.clip is None:
                return gr.update(), gr.update(), gr.update()
            return show(state, index, tab, draw, args)

        @page_errors
        def refresh_edit(state, index, tab, draw, *args):
            """The preview alone (the source frame is where it was): one image to encode and send, not two."""
            if state is None or state.clip is None:
                return gr.update(), gr.update()
            return show(state, index, tab, False, args)[1:]

        def refresh_unqueued(*args):
            try:
                return refresh_edit(*args)
            except gr.Error as exc:
                return gr.update(), f"**Error:** {exc.message}"

        refresh_inputs = [session, frame, active, show_face, *all_inputs]
        frame.release(refresh, refresh_inputs, [before, after, timing], show_progress="minimal")
        show_face.input(refresh, refresh_inputs, [before, after, timing])
        refresh_outputs = [after, timing]  # what every other control updates
        for control in (*slider_list, strength, scale, texture, driving_time):
            # Not queued: a release's preview comes about 70 ms sooner (benchmarks/studio_preview.py); its errors
            # go in the line under the preview, as an unqueued event shows no error box.
            control.release(refresh_unqueued, refresh_inputs, refresh_outputs, show_progress="minimal", queue=False)
        for control in (preset, relative, motion, pose, transfer_aus, memory):
            control.input(refresh_edit, refresh_inputs, refresh_outputs, show_progress="minimal")
        for control in (start, end, ramp):  # typed: once the field is left or Enter pressed
            control.blur(refresh_edit, refresh_inputs, refresh_outputs, show_progress="minimal")
            control.submit(refresh_edit, refresh_inputs, refresh_outputs, show_progress="minimal")

        @page_errors
        def switch_mode(state, index, mode_):
            """Set mode: each slider starts at the frame's own reading (so an untouched one edits nothing)."""
            if mode_ == SET and state is not None and state.clip is not None:
                readings = state.clip.aus[int(index)]
                readings = tuple(float(np.round(v, 1)) if np.isfinite(v) else 0.0 for v in readings)
                return (readings, *(gr.update(minimum=SET_RANGE[0], maximum=SET_RANGE[1], value=v) for v in readings))
            if mode_ == SET:
                return (tuple(0.0 for _ in AU_NAMES),
                        *(gr.update(minimum=SET_RANGE[0], maximum=SET_RANGE[1], value=0) for _ in AU_NAMES))
            return (None, *(gr.update(minimum=ADD_RANGE[0], maximum=ADD_RANGE[1], value=0) for _ in AU_NAMES))

        mode.input(switch_mode, [session, frame, mode], [baseline, *slider_list]).then(
            refresh_edit, refresh_inputs, refresh_outputs)

        def reset_all():
            return (ADD, None, NO_PRESET, 1.0, "", "", 0.3,
                    *(gr.update(minimum=ADD_RANGE[0], maximum=ADD_RANGE[1], value=0) for _ in AU_NAMES))

        reset.click(reset_all, None, [mode, baseline, preset, strength, start, end, ramp, *slider_list]).then(
            refresh_edit, refresh_inputs, refresh_outputs)

        def on_tab(tab: str):
            return tab

        edit_tab.select(functools.partial(on_tab, "edit"), None, active).then(refresh_edit, refresh_inputs,
                                                                              refresh_outputs)
        transfer_tab.select(functools.partial(on_tab, "transfer"), None, active).then(refresh_edit, refresh_inputs,
                                                                                      refresh_outputs)

        @page_errors
        def open_driving(path, state, progress=gr.Progress()):
            from reenact.api import read_driving

            if state is None:
                state = Session()
            if not path:
                state.driving = None
                return state, "No driving clip yet.", gr.update()
            progress(0, desc="tracking the driving clip")
            with _named(path):
                check_clip(path, "driving clips")
                track, info, _ = read_driving(path, TrackingOptions())
            state.driving = (track, Path(path).name, path)
            last = float(track.times[-1]) if len(track.times) else 0.0
            text = (f"Driving clip **{html.escape(Path(path).name)}**: {len(track.times)} frames, "
                    f"{info.duration or last:.1f} s.")
            return state, text, gr.update(minimum=0, maximum=max(last, 0.04), value=min(last / 2, last))

        driving_outputs = [session, driving_status, driving_time]
        driving.clear(open_driving, [driving, session], driving_outputs).then(
            refresh_edit, refresh_inputs, refresh_outputs)
        driving.upload(open_driving, [driving, session], driving_outputs).then(
            refresh_edit, refresh_inputs, refresh_outputs)

        @page_errors
        def render_clip(state, tab, *args, progress=gr.Progress()):
            from reenact.api import analyze_aus, transfer_expression

            if state is None or state.clip is None:
                raise gr.Error("open a clip first")
            clip = state.clip
            target, kwargs, options = job(state, tab, args)
            if target is None:
                raise gr.Error("open a driving clip first (Transfer tab)")
            if tab == "edit" and edit_controls(*split(args)[0]).is_empty():
                raise gr.Error("nothing to edit: move an AU slider or pick a preset")
            state.cancel.clear()
            out_dir = Path(tempfile.mkdtemp(prefix="render-", dir=clip.folder))
            suffix = "edited" if tab == "edit" else "transfer"
            output = out_dir / copy_name(clip.path, suffix)
            counter = [0, len(clip)]

            def count(done: int, total: int) -> None:
                counter[0], counter[1] = done, total

            progress(0, desc="rendering")
            if tab == "transfer" and clip.info.is_image:  # a still is animated along the driving clip's timeline
                output = output.with_suffix(".mp4")
                controls = transfer_controls(*split(args)[1])
                report = transfer_expression(clip.path, state.driving[2], output, controls.relative, controls.scale,
                                             controls.aus, generator=options, tracking=clip.tracking,
                                             follow_pose=controls.follow_pose, motion=controls.motion)
            else:
                report = _in_thread(lambda: clip.render(output, target, options, progress=count, cancel=state.cancel,
                                                        **kwargs), progress, counter, "rendering")
            progress(1.0, desc="measuring the result's AUs")
            csv = output.with_suffix(".csv")
            analyze_aus(output, csv)
            line = (f"Rendered **{output.name}**: {report.frames} frames in {report.seconds:.1f} s "
                    f"({report.fps:.1f} fps).")
            if tab == "edit":
                same = edit_controls(*split(args)[0]).command(clip.path.name, output.name)
            else:
                same = transfer_controls(*split(args)[1]).command(clip.path.name, state.driving[1],
                                                                   output.name)
            line += f"  \nThe same from the command line: `{same}`"
            source = None if clip.info.is_image else str(clip.path)
            shown = None if output.suffix.lower() in (".png", ".jpg", ".jpeg") else str(output)
            return source, shown, [str(output), str(csv)], line

        render.click(render_clip, [session, active, *all_inputs], [original, result, files, command])

        def cancel_render(state):
            if state is not None:
                state.cancel.set()
            return "Render cancelled; nothing was written."

        cancel.click(cancel_render, session, command)

        if input is not None:
            def open_given(face_label, draw, state, *args, progress=gr.Progress()):
                return (os.fspath(input), *open_clip(os.fspath(input), face_label, draw, state, *args,
                                                     progress=progress))

            app.load(open_given, [face, show_face, session, *all_inputs], [upload, *open_outputs])
    return app
