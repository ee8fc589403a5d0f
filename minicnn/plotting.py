"""The lecture's training-history figure: loss and accuracy per epoch, training vs validation.

Two panels stacked as in the lecture (R keras's plot(history)): loss on top, accuracy
below, training as points and lines, validation in a second colour. Needs matplotlib, the
optional extra `plot` (pip install "minicnn[plot]").
"""
from __future__ import annotations

import os

from minicnn.atomic import atomic_path

MISSING_MATPLOTLIB = ("plotting needs matplotlib, which is an optional extra: "
                      "pip install 'minicnn[plot]'  (or: pip install matplotlib)")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")                     # files only; no screen needed
    import matplotlib.pyplot as plt
    return plt


def colormap(name: str):
    """matplotlib's colormap called name ('jet', 'viridis'): maps values in [0, 1] to RGBA."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    return matplotlib.colormaps[name]


def save_image(array, path) -> str:
    """A uint8 picture, (H, W) grayscale or (H, W, 3) RGB, written as PNG under a temporary
    name and renamed into place (Pillow; no matplotlib needed)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return os.fspath(path)


def _save(plt, fig, path) -> str:
    """Write the figure as PNG under a temporary name, rename it into place, close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return os.fspath(path)


def _accuracy_key(history: dict):
    for key in ("acc", "accuracy", "binary_accuracy"):
        if key in history:
            return key
    return None


def history_figure(history: dict, title=None):
    """The two panels of a History's `.history` dict as a matplotlib Figure: loss on top,
    accuracy below (when the history has it), each with its training and validation curves,
    the epoch axis in whole numbers from 1."""
    if "loss" not in history or not history["loss"]:
        raise ValueError(f"plot_history: the history has no 'loss' values to plot "
                         f"(keys: {sorted(history)})")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    acc = _accuracy_key(history)
    panels = [("loss", "loss")] + ([(acc, "accuracy")] if acc else [])
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(7, 3.2 * len(panels)),
                             squeeze=False)
    epochs = range(1, len(history["loss"]) + 1)
    for ax, (key, label) in zip(axes[:, 0], panels):
        ax.plot(epochs, history[key], "o-", color="#1f77b4", markersize=3, label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "^-", color="#d62728", markersize=3,
                    label="validation")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("epoch")
    # Epochs are whole numbers: no 1.5 ticks on a short run, at most ~10 ticks on a long one.
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10, min_n_ticks=1))
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def plot_history(history: dict, path, title=None) -> str:
    """Write history_figure(history, title) as a PNG; returns the path.

    The file is written to a temporary name beside `path` and renamed into place.
    """
    fig = history_figure(history, title)
    return _save(_pyplot(), fig, path)


def plot_image_grid(images, path, rows=2, cols=2, title=None) -> str:
    """Write images (each (H, W, 3) in [0, 1]) as a rows x cols grid PNG; returns the path."""
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax, image in zip(axes.ravel(), images):
        ax.imshow(image.clip(0, 1))
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def validation_curves_figure(curves: dict, book: dict | None = None, title=None):
    """One panel: each flow's validation accuracy per epoch (curves: name -> values), with
    the book's figure for it (book: name -> accuracy) as a dotted line of the same colour."""
    curves = {name: values for name, values in curves.items() if len(values)}
    if not curves:
        raise ValueError("plot_validation_curves: no flow has validation accuracies to plot")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, values), colour in zip(curves.items(), colours * len(curves)):
        ax.plot(range(1, len(values) + 1), values, "-", color=colour, linewidth=1.4,
                label=f"{name} (best {max(values):.3f})")
        if book and name in book:
            ax.axhline(book[name], color=colour, linestyle=":", linewidth=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10, min_n_ticks=1))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", title="dotted: the book's figure" if book else None)
    ax.set_title(title or "The lecture's flows: validation accuracy per epoch")
    fig.tight_layout()
    return fig


def plot_validation_curves(curves: dict, book: dict | None, path, title=None) -> str:
    """Write validation_curves_figure(curves, book, title) as a PNG; returns the path."""
    fig = validation_curves_figure(curves, book, title)
    return _save(_pyplot(), fig, path)
