"""`render_sample`: one stored sample to one PNG, dispatched by its domain (what `gdl show` runs).

mesh -> pyvista off-screen; sphere -> Mollweide (healpy); graph -> spring layout (networkx);
molecule -> 3D balls and sticks. The renderer modules are imported on demand so that drawing a
graph never loads VTK.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gdl_data.domains import DOMAINS
from gdl_data.errors import SpecError
from gdl_data.params import Integer, check_value
from gdl_data.viz.fields import (DEFAULT_COLUMNS, Field, node_count, parse_column,
                                 resolve_field, resolve_grid, sample_title)


def render_sample(sample: Mapping[str, Any], column: str | None, component: int | None,
                  out: str, *, grid: int = 0, glyphs: str | None = None,
                  size: tuple[int, int] = (800, 600)) -> str:
    """Draw one sample (a dict from `open_dataset(uri)[i]`) to the PNG file `out`.

    Args:
        sample: canonical columns of one sample, with `domain` among mesh/sphere/graph/molecule.
        column: what colours the picture: a per-node column (`mass`, `z`, `y`), a component of
            one (`evecs`, `values`, `x`, `pos`) or `geo_dist` (the source is marked). May carry
            the component itself, `"evecs:3"`. None: the domain's default (mesh `evecs:1`,
            sphere `values:0`, graph `y`, molecule `z` as element colours), or an uncoloured
            picture when the sample lacks it.
        component: the component j of `column` (default 0); with `grid`, the first panel's.
        out: path of the PNG to write; parent folders are created.
        grid: if > 0, draw that many consecutive components side by side (default column
            `evecs`: the first eigenfunctions).
        glyphs: mesh only: `"normals"` or `"frames"` (e1 red, e2 green, normal blue) as arrows
            (at most 1500, evenly spaced in vertex order).
        size: (width, height) of the whole image in pixels, default (800, 600).

    Returns:
        `out`, as a string.

    Raises:
        SpecError: a column the sample lacks (naming the op that adds it and what is
            available), a component out of range, or an invalid argument.
    """
    domain = str(sample.get("domain", ""))
    if domain not in DOMAINS:
        raise SpecError(f"cannot draw a sample of domain '{domain}'; known: {', '.join(DOMAINS)}")
    if Path(out).suffix.lower() != ".png":
        raise SpecError(f"--out '{out}' must name a .png file, e.g. '{Path(out).stem}.png'")
    size = _check_size(size)
    column, component = _merge_component(column, component)
    if glyphs is not None and domain != "mesh":
        raise SpecError(f"--glyphs draws normals or frames on a mesh; this sample is a {domain}")
    fields = _fields(sample, domain, column, component, grid)
    title = sample_title(sample)
    Path(out).parent.mkdir(parents=True, exist_ok=True)

    if domain == "mesh":
        from gdl_data.viz.mesh import GLYPH_TITLES, glyph_vectors, render_mesh
        arrows = glyph_vectors(sample, glyphs) if glyphs else []
        return render_mesh(sample["pos"], sample.get("faces"), fields, out, size, title=title,
                           arrows=arrows, arrows_title=GLYPH_TITLES.get(glyphs, ""))
    if domain == "sphere":
        from gdl_data.viz.sphere import render_sphere
        import healpy as hp
        nside = int(sample["nside"]) if "nside" in sample else hp.npix2nside(node_count(sample))
        return render_sphere(nside, fields, out, size, title=title)
    if domain == "graph":
        from gdl_data.viz.graph import render_graph
        return render_graph(node_count(sample), sample.get("edge_index", np.zeros((2, 0))),
                            fields, out, size, title=title)
    from gdl_data.viz.molecule import render_molecule
    return render_molecule(sample["pos"], sample.get("z"), sample.get("bond_index"),
                           sample.get("edge_index"), fields, out, size, title=title)


def _fields(sample: Mapping[str, Any], domain: str, column: str | None, component: int | None,
            grid: int) -> list[Field]:
    """The fields to draw, one per panel; [] means the domain's uncoloured picture."""
    if column is None:
        if grid:
            column = "evecs"
        else:
            column, default_component = DEFAULT_COLUMNS[domain]
            if column not in sample:
                return []
            component = default_component if component is None else component
    if domain == "molecule" and column == "z" and not grid:
        return []   # atomic numbers read best as element colours with a legend
    if grid:
        return resolve_grid(sample, column, component, int(grid))
    return [resolve_field(sample, column, component)]


def _merge_component(column: str | None, component: int | None) -> tuple[str | None, int | None]:
    if component is not None:
        check_value("component", component, Integer(0), error=SpecError)
    if column is None or ":" not in column:
        return column, component
    name, j = parse_column(column)
    if component is not None and j != component:
        raise SpecError(f"column '{column}' and component {component} disagree; give the "
                        f"component once, e.g. '{name}:{j}'")
    return name, j


def _check_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise SpecError(f"size must be (width, height) in pixels, got {size!r}") from None
    if width < 100 or height < 100:
        raise SpecError(f"size {width}x{height} is too small to draw on; use at least 100x100")
    return width, height
