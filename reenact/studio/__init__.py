"""``reenact studio``: a local web app (Gradio) to open a clip, preview AU edits and transfers on any frame, render
and download. ``reenact.studio.clip`` does the work, ``reenact.studio.controls`` says what the controls mean and
``reenact.studio.app`` is the page; Gradio is the optional extra ``reenact[studio]``."""

from __future__ import annotations

import os
from pathlib import Path

from reenact.errors import ReenactError

INSTALL = "the studio needs Gradio, which the core install leaves out: pip install 'reenact[studio]'"


def serve(input: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int | None = None,
          share: bool = False, model: str | None = None, announce=print) -> None:
    """Start the studio on ``host``:``port`` (a free port from 7860 when None), tell ``announce`` its address and
    serve until interrupted. ``share``: also a public gradio.live link (off unless asked for)."""
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise ReenactError(INSTALL) from exc
    from reenact.studio.app import build_app
    from reenact.studio.clip import MAX_MEGABYTES, close_all
    from reenact.video import probe

    allowed = []
    if input is not None:
        probe(input)  # a missing or unreadable file fails here, in the CLI's words, before the server starts
        allowed.append(str(Path(input).resolve().parent))
    app = build_app(None if input is None else str(Path(input).resolve()), model)
    app.queue(default_concurrency_limit=4)
    _, local_url, share_url = app.launch(
        server_name=host, server_port=port, share=share, inbrowser=False, prevent_thread_lock=True, quiet=True,
        show_error=True, max_file_size=f"{MAX_MEGABYTES}mb", allowed_paths=allowed,
    )
    announce(f"reenact studio: {local_url}" + (f" (public link: {share_url})" if share_url else "")
             + "  (Ctrl+C to stop)")
    try:
        app.block_thread()
    finally:
        app.close()
        close_all()
