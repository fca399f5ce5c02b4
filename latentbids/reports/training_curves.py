"""The training-curves figure of the group level (``group/*_desc-training_curves.png``).

A figure is a report's job: the group workflow hands the curves table here and writes the bytes it gets
back, so no workflow imports matplotlib or holds pyplot state (the figure is a pyplot-free Agg figure).
"""
from __future__ import annotations

import io

import pandas as pd


def training_curves_png(curves: pd.DataFrame) -> bytes:
    """Training and validation loss per epoch of every fold, on a log scale, as PNG bytes.

    Parameters
    ----------
    curves : pandas.DataFrame
        One row per fold and epoch: ``fold``, ``epoch``, ``train_loss``, ``val_loss`` (masked MSE, model
        units); other columns are ignored.

    Returns
    -------
    bytes
        A 600 x 400 pixel PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for fold, part in curves.groupby("fold", sort=False):
        (line,) = ax.plot(part["epoch"], part["train_loss"], label=f"fold {fold} train")
        ax.plot(part["epoch"], part["val_loss"], "--", color=line.get_color(), label=f"fold {fold} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked MSE")
    ax.set_yscale("log")
    ax.set_title("Autoencoder training curves")
    ax.legend(fontsize=7, ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
