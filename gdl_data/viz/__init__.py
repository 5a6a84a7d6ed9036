"""Pictures of stored samples (what `gdl show` draws): meshes coloured by eigenfunctions or
geodesic distances with optional frame glyphs (pyvista off-screen), HEALPix maps in Mollweide
(healpy), graphs (networkx spring layout) and molecules in 3D (matplotlib). All off-screen:
no display, no pyplot state."""
from gdl_data.viz.demo import render_demo_pictures  # noqa: F401
from gdl_data.viz.fields import parse_column  # noqa: F401
from gdl_data.viz.render import render_sample  # noqa: F401
