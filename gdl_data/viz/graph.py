"""Graphs drawn with a seeded networkx spring layout, nodes coloured by a field (matplotlib Agg)."""
from __future__ import annotations

import matplotlib
import networkx as nx
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Patch

from gdl_data.viz.canvas import NAN_COLOUR, colormap, grid_shape, new_figure, save_png
from gdl_data.viz.fields import Field, colour_scale

LAYOUT_SEED = 0   # the same graph is always drawn the same way


def spring_positions(num_nodes: int, edge_index: np.ndarray) -> np.ndarray:
    """(n, 2) node positions from networkx's spring layout, seeded so pictures are reproducible."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(np.asarray(edge_index, dtype=np.int64).T.tolist())
    layout = nx.spring_layout(graph, seed=LAYOUT_SEED)
    return np.array([layout[i] for i in range(num_nodes)]).reshape(num_nodes, 2)


def render_graph(num_nodes: int, edge_index: np.ndarray, fields: list[Field], out: str,
                 size: tuple[int, int], *, title: str) -> str:
    """One panel per field (same layout in all), nodes coloured by it; a field's `marker` node
    (a geodesic source) is drawn as a star. Class labels get discrete colours and a legend;
    unreachable (NaN) nodes are grey with a legend entry. No field: nodes in one colour."""
    xy = spring_positions(num_nodes, edge_index)
    segments = xy[np.asarray(edge_index, dtype=np.int64).T]            # (e, 2, 2)
    panels = fields or [None]
    rows, cols = grid_shape(len(panels), size) if len(panels) > 1 else (1, 1)
    cell = min(size[0] / cols, size[1] / rows)
    node_size = float(np.clip(0.15 * cell**2 / max(num_nodes, 1), 2, 120))  # points², by crowding
    fig = new_figure(size)
    fig.set_layout_engine("constrained")
    for i, field in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.add_collection(LineCollection(segments, colors="0.65", linewidths=0.6, zorder=1))
        style = dict(s=node_size, edgecolors="black", linewidths=0.3, zorder=2, clip_on=False)
        if field is None:
            ax.scatter(xy[:, 0], xy[:, 1], color="tab:blue", **style)
        elif field.categorical:
            _draw_classes(ax, xy, field, style)
        else:
            vmin, vmax, cmap = colour_scale(field.values)
            shown = ax.scatter(xy[:, 0], xy[:, 1], c=field.values, cmap=colormap(cmap), vmin=vmin,
                               vmax=vmax, plotnonfinite=True, **style)
            fig.colorbar(shown, ax=ax, shrink=0.7)
            if field.unreachable:
                ax.legend(handles=[Patch(color=NAN_COLOUR, label="unreachable (inf)")],
                          loc="lower right", fontsize=8, frameon=False)
        if field is not None and field.marker is not None:
            ax.scatter(*xy[field.marker], s=max(4 * node_size, 150), marker="*",
                       color="magenta", edgecolors="black", zorder=3)
        ax.set_title(field.label if field else "graph", fontsize=10 if len(panels) > 1 else 12)
        # A spring layout has no true aspect ratio: let it fill the panel instead of a square.
        ax.set_aspect("auto" if len(panels) == 1 else "equal")
        ax.set_axis_off()
        ax.margins(0.05)
        ax.autoscale_view()
    fig.suptitle(f"{title}  ({num_nodes} nodes, {segments.shape[0] // 2} edges)", fontsize=11)
    return save_png(fig, out)


def _draw_classes(ax, xy: np.ndarray, field: Field, style: dict) -> None:
    """Nodes coloured by class (tab10/tab20), with a legend naming each class and its size."""
    values = field.values
    classes = np.unique(values[np.isfinite(values)])
    palette = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    handles = []
    for k, c in enumerate(classes):
        members = values == c
        ax.scatter(xy[members, 0], xy[members, 1], color=palette(k), **style)
        handles.append(Patch(color=palette(k), label=f"{field.label} = {c:g} ({int(members.sum())})"))
    missing = ~np.isfinite(values)
    if missing.any():
        ax.scatter(xy[missing, 0], xy[missing, 1], color=NAN_COLOUR, **style)
        handles.append(Patch(color=NAN_COLOUR, label=f"no label ({int(missing.sum())})"))
    ax.legend(handles=handles, loc="best", fontsize=9, frameon=False)
