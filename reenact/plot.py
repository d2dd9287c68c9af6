"""Plots of AU curves over time (matplotlib, which MediaPipe already installs)."""

from __future__ import annotations

import os

import numpy as np

from reenact.face.aus import AU_DESCRIPTIONS, AU_NAMES


def au_figure(times: np.ndarray, aus: np.ndarray, title: str = ""):  # -> matplotlib.figure.Figure
    """One small panel per AU, intensity 0-5 against time in seconds, named as AU_DESCRIPTIONS names it (the one
    list of AU names: the plot says what the edit does); frames without a face are gaps. A single frame (a still
    image) is drawn as one bar per AU: a curve of one point shows nothing."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works on headless machines
    import matplotlib.pyplot as plt

    if len(times) == 1:
        fig, axis = plt.subplots(figsize=(8, 0.3 * len(AU_NAMES) + 1))
        rows = np.arange(len(AU_NAMES))[::-1]  # AU01 at the top, as in the curves
        axis.barh(rows, np.nan_to_num(aus[0]), color="tab:blue")
        axis.set_yticks(rows, [f"{name}  {AU_DESCRIPTIONS[name]}" for name in AU_NAMES], fontsize=8)
        axis.set_xlim(0, 5)
        axis.set_xlabel("intensity (0-5)")
        if title:
            axis.set_title(title)
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(len(AU_NAMES), 1, figsize=(10, 1.0 * len(AU_NAMES)), sharex=True)
    for i, (axis, name) in enumerate(zip(axes, AU_NAMES)):
        axis.plot(times, aus[:, i], lw=1.0, color="tab:blue")
        axis.set_ylim(0, 5)
        axis.set_yticks([0, 5])
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axis.text(1.0, 0.9, AU_DESCRIPTIONS[name], transform=axis.transAxes, ha="right", va="top", fontsize=7)
    axes[-1].set_xlabel("time (s)")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_au_curves(times: np.ndarray, aus: np.ndarray, path: str | os.PathLike[str], title: str = "") -> None:
    """``au_figure`` written to ``path`` (PNG, JPEG, PDF or SVG, by its extension)."""
    import matplotlib.pyplot as plt

    from reenact.files import atomic_output

    fig = au_figure(times, aus, title)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
