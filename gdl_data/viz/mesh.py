"""Meshes and point clouds coloured by a field, drawn off-screen with pyvista (VTK)."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # Headless: ask VTK for its EGL window at once instead of failing over from X with a
    # "bad X server connection" warning; a user's own choice (e.g. vtkOSOpenGLRenderWindow) wins.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import pyvista as pv  # noqa: E402  (after the environment above)

from gdl_data.errors import SpecError  # noqa: E402
from gdl_data.viz.canvas import NAN_COLOUR, grid_shape  # noqa: E402
from gdl_data.viz.fields import Field, colour_scale, require_column  # noqa: E402

MAX_GLYPHS = 1500   # more arrows than this turn into a hedgehog; a fixed stride keeps it readable
GLYPH_COLOURS = {"normals": ("black",), "frames": ("red", "limegreen", "blue")}  # e1, e2, normal
GLYPH_TITLES = {"normals": "normals: black arrows", "frames": "frames: e1 red, e2 green, normal blue"}


def glyph_vectors(sample: Mapping[str, Any], glyphs: str) -> list[tuple[np.ndarray, str]]:
    """Arrows to draw for `--glyphs normals|frames`: (per-vertex vectors (n, 3), colour) pairs."""
    if glyphs not in GLYPH_COLOURS:
        raise SpecError(f"unknown --glyphs '{glyphs}'; write one of: {', '.join(GLYPH_COLOURS)}")
    arr = np.asarray(require_column(sample, glyphs), dtype=np.float64)
    if glyphs == "normals":
        return [(arr.reshape(-1, 3), GLYPH_COLOURS["normals"][0])]
    return [(arr[:, row, :], colour) for row, colour in enumerate(GLYPH_COLOURS["frames"])]


def render_mesh(pos: np.ndarray, faces: np.ndarray | None, fields: list[Field], out: str,
                size: tuple[int, int], *, title: str,
                arrows: list[tuple[np.ndarray, str]] = (), arrows_title: str = "") -> str:
    """Draw the surface (or point cloud, when `faces` is empty) once per field, side by side.

    One field: a single view with a colour bar. Several: a grid of linked views, each with a
    colour scale of its own (eigenfunctions differ in amplitude). No field: plain grey surface.
    `arrows` are drawn as glyphs on every view, named by `arrows_title` in the heading.
    Unreachable (NaN) values are grey, with a legend entry saying so. Returns `out`.
    """
    surface = _polydata(np.asarray(pos, dtype=np.float64), faces)
    diagonal = float(np.linalg.norm(np.ptp(surface.points, axis=0))) or 1.0
    panels = fields or [None]
    rows, cols = grid_shape(len(panels), size) if len(panels) > 1 else (1, 1)
    glyphs = [(_arrow_glyphs(surface.points, vectors, diagonal), colour) for vectors, colour in arrows]
    font_size = int(np.clip(size[1] / rows / 45, 8, 18))   # VTK sizes text in pixels-ish
    plotter = pv.Plotter(off_screen=True, window_size=list(size), shape=(rows, cols),
                         border=False)
    try:
        plotter.set_background("white")
        for i, field in enumerate(panels):
            plotter.subplot(i // cols, i % cols)
            _draw_panel(plotter, surface, field, diagonal, single=len(panels) == 1)
            for arrow_mesh, colour in glyphs:
                plotter.add_mesh(arrow_mesh, color=colour)
            label = field.label if field else "surface"
            if arrows_title:
                name, _, colours = arrows_title.partition(": ")
                label = f"{name} on {label}"
                plotter.add_text(colours or name, position="lower_left", font_size=max(font_size - 3, 7),
                                 color="black")
            heading = f"{label}  ({title})" if len(panels) == 1 or i == 0 else label
            plotter.add_text(heading, position="upper_edge", font_size=font_size, color="black")
        if len(panels) > 1:
            plotter.link_views()
        plotter.reset_camera()
        plotter.screenshot(str(out))
    finally:
        plotter.close()
    return str(out)


def _polydata(pos: np.ndarray, faces: np.ndarray | None) -> pv.PolyData:
    faces = np.zeros((0, 3), np.int64) if faces is None else np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return pv.PolyData(pos)
    cells = np.hstack([np.full((len(faces), 1), 3, np.int64), faces]).ravel()
    return pv.PolyData(pos, cells)


def _draw_panel(plotter: pv.Plotter, surface: pv.PolyData, field: Field | None,
                diagonal: float, *, single: bool) -> None:
    point_cloud = surface.GetNumberOfPolys() == 0
    style = dict(render_points_as_spheres=True, point_size=6) if point_cloud else {}
    if field is None:
        plotter.add_mesh(surface, color="lightgrey", smooth_shading=True, **style)
        return
    vmin, vmax, cmap = colour_scale(field.values)
    mesh = surface.copy(deep=False)
    mesh.point_data[field.label] = field.values
    plotter.add_mesh(mesh, scalars=field.label, cmap=cmap, clim=(vmin, vmax),
                     nan_color=NAN_COLOUR, smooth_shading=not point_cloud, show_scalar_bar=single,
                     ambient=0.35, diffuse=0.65,   # flatter light: colours stay readable on dark sides
                     # The bar's title is the legend for the grey of unreachable points.
                     scalar_bar_args=dict(title="grey: unreachable (inf)" if field.unreachable else "",
                                          color="black", vertical=False,
                                          position_x=0.25, position_y=0.03, width=0.5, height=0.06),
                     **style)
    if field.marker is not None:
        centre = surface.points[field.marker]
        plotter.add_mesh(pv.Sphere(radius=0.02 * diagonal, center=centre), color="magenta")


def _arrow_glyphs(points: np.ndarray, vectors: np.ndarray, diagonal: float) -> pv.PolyData:
    keep = np.unique(np.linspace(0, len(points) - 1, min(len(points), MAX_GLYPHS)).astype(int))
    cloud = pv.PolyData(points[keep])
    cloud["vectors"] = np.asarray(vectors, dtype=np.float64)[keep]
    # Arrow length: about the spacing of the kept points, so neighbouring arrows barely touch.
    length = 0.6 * diagonal / np.sqrt(len(keep))
    return cloud.glyph(orient="vectors", scale=False, factor=length, geom=pv.Arrow())
