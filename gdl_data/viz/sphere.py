"""HEALPix maps and eigenvectors in the Mollweide projection (healpy's projector, RING order),
drawn on a matplotlib Agg figure."""
from __future__ import annotations

import healpy as hp
import numpy as np
from matplotlib.patches import Ellipse

from gdl_data.errors import SpecError
from gdl_data.viz.canvas import colormap, grid_shape, new_figure, save_png
from gdl_data.viz.fields import Field, colour_scale

MOLLWEIDE_ASPECT = 2.0   # the projected sphere is an ellipse twice as wide as tall


def render_sphere(nside: int, fields: list[Field], out: str, size: tuple[int, int], *,
                  title: str) -> str:
    """One Mollweide panel per field (pixel values in RING order, `12 nside²` of them), each with
    its own colour bar; a field's `marker` pixel (a geodesic source) is drawn as a star."""
    npix = hp.nside2npix(nside)
    for field in fields:
        if len(field.values) != npix:
            raise SpecError(f"'{field.label}' has {len(field.values)} values but a HEALPix map "
                            f"of nside {nside} has {npix} pixels")
    panels = fields or [Field(np.zeros(npix), "pixels")]
    rows, cols = grid_shape(len(panels), size, MOLLWEIDE_ASPECT) if len(panels) > 1 else (1, 1)
    projector = hp.projector.MollweideProj(xsize=max(200, size[0] // cols))
    fig = new_figure(size)
    fig.set_layout_engine("constrained")
    for i, field in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = projector.projmap(field.values, lambda x, y, z: hp.vec2pix(nside, x, y, z))
        vmin, vmax, cmap = colour_scale(field.values)
        # Off the ellipse the projector returns -inf: leave it transparent (white), while NaN
        # pixels inside show the grey ellipse drawn underneath.
        shown = ax.imshow(np.ma.masked_invalid(image), extent=projector.get_extent(),
                          origin="lower", cmap=colormap(cmap, bad=(0, 0, 0, 0)), vmin=vmin,
                          vmax=vmax, interpolation="nearest")
        ax.add_patch(Ellipse((0, 0), 4, 2, facecolor="lightgrey", edgecolor="black",
                             linewidth=0.6, zorder=-1))
        if field.marker is not None:
            x, y = projector.vec2xy(np.array(hp.pix2vec(nside, field.marker)))
            ax.plot([x], [y], marker="*", markersize=14, color="magenta", markeredgecolor="black")
        ax.set(xlim=(-2.02, 2.02), ylim=(-1.02, 1.02), aspect="equal")
        ax.set_axis_off()
        ax.set_title(field.label, fontsize=10 if len(panels) > 1 else 12)
        if fields:
            fig.colorbar(shown, ax=ax, orientation="horizontal", shrink=0.6, aspect=30)
    fig.suptitle(f"{title}  (HEALPix nside {nside}, Mollweide)", fontsize=11)
    return save_png(fig, out)
