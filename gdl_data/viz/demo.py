"""The pictures the README shows (committed under docs/), drawn from the demo datasets."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from gdl_data.viz.render import render_sample

GRID_PANELS = 8   # eigenfunctions 1..8: 0 is constant on a connected domain


class Picture(NamedTuple):
    suffix: str                 # file name: "{dataset name}_{suffix}.png"
    needs: tuple[str, ...]      # columns the sample must have (else the picture is skipped)
    column: str | None
    grid: int = 0
    glyphs: str | None = None
    size: tuple[int, int] = (800, 600)


def demo_pictures(sample: Mapping[str, Any]) -> list[Picture]:
    """The pictures worth drawing for this sample: those whose columns it has."""
    k = np.shape(sample["evecs"])[-1] if "evecs" in sample else 0
    panels = max(min(GRID_PANELS, k - 1), 0)
    evecs = ("evecs",)
    wanted = {
        "mesh": [Picture("eigenfunctions", evecs, "evecs:1", panels, size=(1600, 800)),
                 Picture("geodesic", ("geo_dist",), "geo_dist:0"),
                 Picture("frames", evecs + ("frames",), "evecs:1", glyphs="frames")],
        "sphere": [Picture("map", ("values",), "values:0"),
                   Picture("eigenvectors", evecs, "evecs:1", min(panels, 4), size=(1200, 700))],
        "graph": [Picture("eigenvector", evecs, "evecs:1"), Picture("graph", ("edge_index",), None)],
        "molecule": [Picture("radius_graph", ("edge_index",), None)],
    }[str(sample["domain"])]
    # Eigenfunction pictures start at 1 (0 is constant), so they need k >= 2.
    return [p for p in wanted if all(c in sample for c in p.needs)
            and (k >= 2 or "evecs" not in p.needs)]


def render_demo_pictures(datasets: Mapping[str, str], out_dir: str | Path, *,
                         index: int = 0) -> list[str]:
    """Draw the README's pictures: for each `name -> dataset URI`, sample `index` (default 0) as
    `{out_dir}/{name}_{kind}.png` -- a mesh's eigenfunction grid, geodesic field and frames, a
    HEALPix map and eigenvectors, a graph's eigenvector, a molecule with its radius graph --
    whichever its columns allow. Returns the paths written, in order."""
    from gdl_data.dataset import open_dataset

    out_dir = Path(out_dir)
    written = []
    for name, uri in datasets.items():
        sample = open_dataset(uri)[index]
        for picture in demo_pictures(sample):
            written.append(render_sample(sample, picture.column, None,
                                         str(out_dir / f"{name}_{picture.suffix}.png"),
                                         grid=picture.grid, glyphs=picture.glyphs,
                                         size=picture.size))
    return written
