"""Molecules in 3D: atoms as balls, covalent bonds as sticks, the pipeline's radius graph as thin
dashed lines, on a matplotlib 3D axes (Agg)."""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from mpl_toolkits.mplot3d.art3d import Line3DCollection

from gdl_data.viz.canvas import NAN_COLOUR, colormap, grid_shape, new_figure, save_png
from gdl_data.viz.fields import Field, colour_scale

# CPK colours of the elements met in organic chemistry; any other element is drawn pink.
ELEMENTS = {1: ("H", "white"), 5: ("B", "salmon"), 6: ("C", "dimgrey"), 7: ("N", "blue"),
            8: ("O", "red"), 9: ("F", "limegreen"), 14: ("Si", "tan"), 15: ("P", "orange"),
            16: ("S", "gold"), 17: ("Cl", "green"), 35: ("Br", "darkred"), 53: ("I", "purple")}
OTHER_ELEMENT = "hotpink"


def render_molecule(pos: np.ndarray, z: np.ndarray | None, bond_index: np.ndarray | None,
                    edge_index: np.ndarray | None, fields: list[Field], out: str,
                    size: tuple[int, int], *, title: str) -> str:
    """One 3D panel per field, atoms coloured by it; no field: atoms in their element's CPK
    colour with a legend. Bonds (`bond_index`) and radius-graph edges (`edge_index`) are drawn
    when given. The molecule is turned to its principal axes so that its widest extent faces
    the viewer."""
    xyz = _principal_axes(np.asarray(pos, dtype=np.float64))
    z = np.zeros(len(xyz), np.int64) if z is None else np.asarray(z, dtype=np.int64)
    panels = fields or [None]
    rows, cols = grid_shape(len(panels), size) if len(panels) > 1 else (1, 1)
    cell = min(size[0] / cols, size[1] / rows)
    ball = np.where(z == 1, 0.5, 1.0) * np.clip(cell**2 / (8 * max(len(xyz), 1)), 15, 250)
    fig = new_figure(size)
    fig.set_layout_engine("constrained")
    for i, field in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        legend = _draw_edges(ax, xyz, bond_index, edge_index)
        if field is None:
            colours = [ELEMENTS.get(int(a), ("", OTHER_ELEMENT))[1] for a in z]
            ax.scatter(*xyz.T, s=ball, c=colours, edgecolors="black", linewidths=0.4,
                       depthshade=False, alpha=1.0)
            legend += [Line2D([], [], marker="o", linestyle="", markerfacecolor=colour,
                              markeredgecolor="black", label=symbol)
                       for symbol, colour in _present_elements(z)]
        else:
            vmin, vmax, cmap = colour_scale(field.values)
            shown = ax.scatter(*xyz.T, s=ball, c=field.values, cmap=colormap(cmap), vmin=vmin,
                               vmax=vmax, plotnonfinite=True, edgecolors="black",
                               linewidths=0.4, depthshade=False, alpha=1.0)
            fig.colorbar(shown, ax=ax, shrink=0.6)
            if field.marker is not None:
                ax.scatter(*xyz[field.marker], s=3 * ball.max(), marker="*", color="magenta",
                           edgecolors="black", depthshade=False)
            if field.unreachable:   # bond hops to another fragment (a salt's counter-ion)
                # 3D scatter drops NaN colours even with plotnonfinite: draw those atoms in grey.
                grey = np.isnan(field.values)
                ax.scatter(*xyz[grey].T, s=ball[grey] if np.ndim(ball) else ball, color=NAN_COLOUR,
                           edgecolors="black", linewidths=0.4, depthshade=False, alpha=1.0)
                legend.append(Line2D([], [], marker="o", linestyle="", markerfacecolor=NAN_COLOUR,
                                     markeredgecolor="black", label="unreachable (inf)"))
        if legend:
            ax.legend(handles=legend, loc="lower center", ncols=len(legend), fontsize=8,
                      frameon=False, handlelength=1.5, columnspacing=1.0)
        ax.set_title(field.label if field else "atoms by element", fontsize=10 if len(panels) > 1 else 12)
        _fit_view(ax, xyz)
        ax.view_init(elev=12, azim=-90)   # x (widest) across, y (second) up the screen's z axis
        ax.set_axis_off()
    fig.suptitle(f"{title}  ({len(xyz)} atoms)", fontsize=11)
    return save_png(fig, out)


def _fit_view(ax, xyz: np.ndarray) -> None:
    # Equal scale on the three axes with limits hugging the atoms (set_aspect("equal") pads to
    # a cube and leaves the molecule small).
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    spread = np.maximum(high - low, 0.25 * max(float((high - low).max()), 1.0)) + 1.5  # + a ball
    centre = (low + high) / 2
    ax.set(xlim=(centre[0] - spread[0] / 2, centre[0] + spread[0] / 2),
           ylim=(centre[1] - spread[1] / 2, centre[1] + spread[1] / 2),
           zlim=(centre[2] - spread[2] / 2, centre[2] + spread[2] / 2))
    ax.set_box_aspect(spread, zoom=1.1)


def _draw_edges(ax, xyz: np.ndarray, bond_index, edge_index) -> list[Line2D]:
    legend = []
    if edge_index is not None and np.size(edge_index):
        ax.add_collection3d(Line3DCollection(_undirected_segments(xyz, edge_index),
                                             colors="tab:orange", linewidths=0.7,
                                             linestyles="dashed", alpha=0.6))
        legend.append(Line2D([], [], color="tab:orange", linestyle="dashed", label="edge_index"))
    if bond_index is not None and np.size(bond_index):
        ax.add_collection3d(Line3DCollection(_undirected_segments(xyz, bond_index),
                                             colors="0.2", linewidths=2.5))
        legend.append(Line2D([], [], color="0.2", linewidth=2.5, label="bonds"))
    return legend


def _undirected_segments(xyz: np.ndarray, index: np.ndarray) -> np.ndarray:
    pairs = np.unique(np.sort(np.asarray(index, dtype=np.int64).T, axis=1), axis=0)  # once per pair
    return xyz[pairs]


def _present_elements(z: np.ndarray) -> list[tuple[str, str]]:
    return [ELEMENTS.get(int(a), (f"Z={int(a)}", OTHER_ELEMENT)) for a in np.unique(z)]


def _principal_axes(xyz: np.ndarray) -> np.ndarray:
    # Columns: widest principal direction, second, narrowest -> drawn as x, z (up), y (depth).
    centred = xyz - xyz.mean(axis=0)
    if len(centred) < 2:
        return centred
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    turned = centred @ axes.T
    turned = np.pad(turned, ((0, 0), (0, 3 - turned.shape[1])))   # fewer than 3 atoms
    return turned[:, [0, 2, 1]]
