"""Plots written as PNG (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

from edgefmnist.atomic import write_bytes_atomic
from edgefmnist.errors import EdgeFmnistError, printable

NO_MATPLOTLIB = "plots need matplotlib: pip install 'edgefmnist[train]' or pip install matplotlib"


def need_matplotlib() -> None:
    """Raise :class:`EdgeFmnistError` when matplotlib is not installed: a command that was asked for a
    plot checks this before its work, not after it (a board's runtime install has no matplotlib)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise EdgeFmnistError(NO_MATPLOTLIB)


def pyplot():
    """matplotlib's pyplot on the Agg backend, with mathtext off; raises :class:`EdgeFmnistError` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams["text.parse_math"] = False  # a "$" in a file or class name is text, not TeX
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeFmnistError(NO_MATPLOTLIB) from None
    return plt


def figure_png(fig) -> bytes:
    """Lay out, render as PNG bytes, and free the figure."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
    return buffer.getvalue()


def save_figure(fig, path: Path) -> None:
    """:func:`figure_png`, written atomically at ``path``."""
    write_bytes_atomic(path, figure_png(fig))


def learning_curves_png(history: list[dict[str, float]], title: str) -> bytes:
    """Loss and train/validation accuracy per epoch, side by side, as PNG bytes."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["loss"] for h in history], marker="o", label="training loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(
        epochs, [100 * h["train_accuracy"] for h in history], marker="o", label="training (running, augmented batches)"
    )
    right.plot(epochs, [100 * h["val_accuracy"] for h in history], marker="o", label="validation")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(printable(title))
    return figure_png(fig)


def save_confusion_matrix(path: Path, confusion: list[list[int]], class_names: tuple[str, ...], title: str) -> None:
    """:func:`confusion_figure`, written as PNG at ``path``."""
    save_figure(confusion_figure(confusion, class_names, title), path)


def confusion_figure(confusion: list[list[int]], class_names: tuple[str, ...], title: str):
    """A labelled heat map: rows are true classes, columns predicted ones, counts in the cells.

    The colour is logarithmic in the count (an empty cell is white), so that the confusions, tens
    of images beside a diagonal of hundreds, show.
    """
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, axis = plt.subplots(figsize=(8, 7))
    most = max(2, max(max(row) for row in confusion))
    norm = LogNorm(vmin=0.5, vmax=most)  # below 1: a single image gets a tint, where 0 is white
    image = axis.imshow(np.ma.masked_less(np.asarray(confusion, dtype=float), 1), cmap="Blues", norm=norm)
    ticks, names = range(len(class_names)), [printable(name) for name in class_names]
    axis.set_xticks(ticks, names, rotation=45, ha="right")
    axis.set_yticks(ticks, names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            colour = "white" if count >= 1 and norm(count) > 0.6 else "black"
            axis.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
    bar = fig.colorbar(image, ax=axis, fraction=0.046, label="images (log scale)")
    bar.set_ticks([tick for tick in (1, 10, 100, 1000, 10_000) if tick <= most])
    bar.ax.yaxis.set_major_formatter("{x:,.0f}")  # plain numbers: mathtext is off (pyplot())
    bar.ax.yaxis.set_minor_formatter("")
    axis.set_title(printable(title))
    return fig
