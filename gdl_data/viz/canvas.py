"""Matplotlib figures drawn with the Agg canvas directly: no pyplot, no global backend change,
so rendering works headless and leaves a user's notebook backend alone."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

DPI = 100
NAN_COLOUR = "lightgrey"   # unreachable / missing values, in every renderer (with a legend)


def new_figure(size: tuple[int, int]) -> Figure:
    """A white figure of exactly `size` = (width, height) pixels."""
    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def grid_shape(count: int, size: tuple[int, int], cell_aspect: float = 1.0) -> tuple[int, int]:
    """(rows, cols) for `count` panels whose cells' width/height comes closest to `cell_aspect`
    (1 for a mesh or graph, about 2 for a Mollweide map)."""
    width, height = size

    def misfit(cols: int) -> float:
        rows = math.ceil(count / cols)
        return abs(math.log((width / cols) / (height / rows) / cell_aspect))

    cols = min(range(1, count + 1), key=misfit)
    return math.ceil(count / cols), cols


def save_png(fig: Figure, out: str | Path) -> str:
    """Write `fig` as PNG at its exact pixel size (no tight bbox, which would change it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI, facecolor="white")
    return str(out)


def colormap(name: str, bad: str | tuple = NAN_COLOUR) -> Colormap:
    """The named colormap with NaN (unreachable, missing) drawn in `bad`."""
    return matplotlib.colormaps[name].with_extremes(bad=bad)
