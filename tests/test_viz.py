"""Pictures of each domain rendered off-screen to PNG (what `gdl show` draws).

Checked: the file is a PNG of the requested size, not blank (pixel spread, many colours), and
that the things the picture is for are on it -- the colour map's two ends for a signed field,
the magenta marker of a geodesic source, the red/green/blue arrows of the frames, element colours
of a molecule -- plus the errors a user gets for a missing column or a bad component.
The samples are built here from trimesh, healpy, networkx and RDKit, not by gdl-data.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from PIL import Image

from gdl_data.errors import GdlError, SpecError
from gdl_data.viz import parse_column, render_sample

SIZE = (480, 360)


# ---- samples ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sphere_mesh():
    """Icosphere (subdivision 2, 162 vertices) with evecs = the constant and x-y, y-z, z-x (l = 0
    and l = 1 Laplace-Beltrami eigenfunctions of the sphere; each changes sign across the
    default (1, 1, 1) view direction, so both ends of the colour map face the camera),
    great-circle distances and tangent frames."""
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=2)
    pos = np.asarray(ico.vertices)
    n = len(pos)
    x, y, z = pos.T
    evecs = np.column_stack([np.full(n, 1 / np.sqrt(n)), x - y, y - z, z - x]) / np.sqrt([1, 2, 2, 2])
    sources = np.array([np.argmax(pos.sum(axis=1)), 40])   # the first faces the camera
    geo_dist = np.arccos(np.clip(pos[sources] @ pos.T, -1, 1))      # (s, n)
    e1 = np.cross([0.3, 0.5, 0.8], pos)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    frames = np.stack([e1, np.cross(pos, e1), pos], axis=1)          # rows e1, e2, normal
    return {"domain": "mesh", "source": "icosphere.ply", "pos": pos.astype(np.float32),
            "faces": np.asarray(ico.faces), "evecs": evecs.astype(np.float32),
            "mass": np.asarray(ico.area_faces.sum() / n * np.ones(n), np.float32),
            "geo_sources": sources, "geo_dist": geo_dist.astype(np.float32),
            "normals": pos.astype(np.float32), "frames": frames.astype(np.float32)}


@pytest.fixture(scope="module")
def healpix_map():
    import healpy as hp

    nside = 8
    rng = np.random.default_rng(0)
    lmax = 3 * nside - 1
    alm = (rng.normal(size=hp.Alm.getsize(lmax)) + 1j * rng.normal(size=hp.Alm.getsize(lmax)))
    alm /= (1 + np.arange(hp.Alm.getsize(lmax))) ** 0.5
    values = hp.alm2map(alm, nside)
    pos = np.column_stack(hp.pix2vec(nside, np.arange(hp.nside2npix(nside))))
    return {"domain": "sphere", "source": "synthetic_cmb.fits", "nside": np.int64(nside),
            "values": values[:, None].astype(np.float32), "pos": pos.astype(np.float32),
            "evecs": np.column_stack([np.ones(len(pos)), pos]).astype(np.float32),
            "geo_sources": np.array([5]),
            "geo_dist": np.arccos(np.clip(pos @ pos[5], -1, 1))[None].astype(np.float32)}


@pytest.fixture(scope="module")
def karate():
    g = nx.karate_club_graph()
    edges = np.array(list(g.edges())).T
    lap = nx.laplacian_matrix(g, nodelist=range(34)).toarray().astype(float)
    _, vectors = np.linalg.eigh(lap)
    return {"domain": "graph", "source": "karate.gml", "num_nodes": np.int64(34),
            "edge_index": np.hstack([edges, edges[::-1]]),
            "y": np.array([g.nodes[i]["club"] == "Officer" for i in range(34)], np.int64),
            "evecs": vectors[:, :6].astype(np.float32)}


@pytest.fixture(scope="module")
def paracetamol():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    pos = mol.GetConformer().GetPositions()
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).T
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    radius = np.array(np.nonzero((dist < 2.5) & (dist > 0)))          # both directions
    return {"domain": "molecule", "source": "paracetamol.sdf#0", "pos": pos.astype(np.float32),
            "z": np.array([a.GetAtomicNum() for a in mol.GetAtoms()], np.int64),
            "bond_index": np.hstack([bonds, bonds[::-1]]), "edge_index": radius,
            "edge_dist": dist[radius[0], radius[1]].astype(np.float32)}


# ---- image checks ----------------------------------------------------------------------------

def load_png(path, size=SIZE) -> np.ndarray:
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    assert image.size == tuple(size)
    rgb = np.asarray(image.convert("RGB")).astype(int)
    assert rgb.std() > 20, "picture is (nearly) blank"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200, "too few colours for a colour map"
    return rgb


def count(rgb, red=None, green=None, blue=None) -> int:
    """Pixels whose channels lie in the given (low, high) ranges."""
    mask = np.ones(rgb.shape[:2], bool)
    for channel, bounds in enumerate((red, green, blue)):
        if bounds is not None:
            mask &= (rgb[..., channel] >= bounds[0]) & (rgb[..., channel] <= bounds[1])
    return int(mask.sum())


def reds_and_blues(rgb, colour_bar: bool = True) -> tuple[int, int]:
    """Pixels towards the two ends of the diverging RdBu map (reddish, bluish; shading darkens
    them), not counting the bottom fifth where a horizontal colour bar would be."""
    if colour_bar:
        rgb = rgb[: int(0.8 * len(rgb))]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r - b > 40) & (r - g > 40)).sum()), int(((b - r > 40) & (b - g > 10)).sum())


MAGENTA = dict(red=(200, 255), green=(0, 90), blue=(200, 255))


# ---- pictures --------------------------------------------------------------------------------

def test_mesh_eigenfunction_is_coloured_by_sign(sphere_mesh, tmp_path):
    rgb = load_png(render_sample(sphere_mesh, "evecs:1", None, tmp_path / "e.png", size=SIZE))
    reds, blues = reds_and_blues(rgb)
    # x - y: positive half red, negative half blue, both in view.
    assert reds > 2000 and blues > 2000


def test_point_cloud_is_drawn_as_points(sphere_mesh, tmp_path):
    cloud = dict(sphere_mesh, faces=np.zeros((0, 3), np.int64))
    rgb = load_png(render_sample(cloud, "evecs:1", None, tmp_path / "c.png", size=SIZE))
    reds, blues = reds_and_blues(rgb)
    assert reds > 300 and blues > 300
    assert (rgb[: int(0.8 * len(rgb))] == 255).all(axis=-1).mean() > 0.6   # gaps between points


def test_mesh_grid_draws_each_component_in_its_own_panel(sphere_mesh, tmp_path):
    size = (900, 300)
    rgb = load_png(render_sample(sphere_mesh, "evecs", 1, tmp_path / "g.png", grid=3, size=size),
                   size)
    for panel in np.array_split(rgb, 3, axis=1):       # 1 row x 3 columns for this shape
        reds, blues = reds_and_blues(panel)
        assert reds > 300 and blues > 300


def test_geodesic_field_marks_its_source(sphere_mesh, tmp_path):
    rgb = load_png(render_sample(sphere_mesh, "geo_dist:0", None, tmp_path / "d.png", size=SIZE))
    assert count(rgb, **MAGENTA) > 30


def test_frames_are_drawn_as_red_green_blue_arrows(sphere_mesh, tmp_path):
    plain = {k: v for k, v in sphere_mesh.items() if k != "evecs"}   # grey surface underneath
    rgb = load_png(render_sample(plain, None, None, tmp_path / "f.png", glyphs="frames",
                                 size=SIZE))
    assert count(rgb, red=(150, 255), green=(0, 90), blue=(0, 90)) > 200
    assert count(rgb, red=(0, 120), green=(100, 255), blue=(0, 120)) > 200
    assert count(rgb, red=(0, 90), green=(0, 90), blue=(150, 255)) > 200


def test_healpix_map_in_mollweide(healpix_map, tmp_path):
    rgb = load_png(render_sample(healpix_map, "values:0", None, tmp_path / "m.png", size=SIZE))
    reds, blues = reds_and_blues(rgb)
    assert reds > 1000 and blues > 1000
    # The ellipse leaves the corners white.
    assert (rgb[:10, :10] == 255).all() and (rgb[-10:, -10:] == 255).all()


def test_healpix_eigenvector_grid_and_geodesic_source(healpix_map, tmp_path):
    rgb = load_png(render_sample(healpix_map, None, 1, tmp_path / "s.png", grid=3,
                                 size=(900, 500)), (900, 500))
    reds, blues = reds_and_blues(rgb)
    assert reds > 3000 and blues > 3000
    rgb = load_png(render_sample(healpix_map, "geo_dist:0", None, tmp_path / "sd.png", size=SIZE))
    assert count(rgb, **MAGENTA) > 20


def test_graph_nodes_coloured_by_fiedler_vector(karate, tmp_path):
    rgb = load_png(render_sample(karate, "evecs:1", None, tmp_path / "k.png", size=SIZE))
    reds, blues = reds_and_blues(rgb)
    assert reds > 100 and blues > 100          # the two factions of the club
    grid = load_png(render_sample(karate, None, None, tmp_path / "kg.png", grid=4, size=SIZE))
    assert grid.std() > 20


def test_molecule_atoms_in_element_colours_with_radius_graph(paracetamol, tmp_path):
    rgb = load_png(render_sample(paracetamol, None, None, tmp_path / "p.png", size=SIZE))
    assert count(rgb, red=(200, 255), green=(0, 60), blue=(0, 60)) > 50      # O
    assert count(rgb, red=(0, 60), green=(0, 60), blue=(200, 255)) > 20       # N
    assert count(rgb, red=(220, 255), green=(100, 170), blue=(0, 60)) > 20    # orange edges


def test_molecule_coloured_by_a_column(paracetamol, tmp_path):
    sample = dict(paracetamol, x=np.asarray(paracetamol["pos"])[:, :1] - 0.0)
    rgb = load_png(render_sample(sample, "x:0", None, tmp_path / "px.png", size=SIZE))
    reds, blues = reds_and_blues(rgb)
    assert reds > 20 and blues > 20


# ---- what a user is told ---------------------------------------------------------------------

def test_parse_column():
    assert parse_column("evecs:3") == ("evecs", 3)
    assert parse_column("mass") == ("mass", None)
    for bad in ("evecs:x", "evecs:-1", ":2", ""):
        with pytest.raises(SpecError, match="NAME:j"):
            parse_column(bad)


def test_missing_column_names_the_op_and_what_is_there(karate, tmp_path):
    sample = {k: v for k, v in karate.items() if k != "evecs"}
    with pytest.raises(SpecError) as info:
        render_sample(sample, "evecs:2", None, tmp_path / "x.png")
    message = str(info.value)
    assert "karate.gml" in message and "no column 'evecs'" in message
    assert "eigenbasis" in message and "available: y" in message
    assert not (tmp_path / "x.png").exists()


def test_component_out_of_range_says_the_range(sphere_mesh, tmp_path):
    with pytest.raises(SpecError, match=r"'evecs:4' is out of range.*'evecs:0' to 'evecs:3'"):
        render_sample(sphere_mesh, "evecs:4", None, tmp_path / "x.png")
    with pytest.raises(SpecError, match=r"--grid 4 from 'evecs:1' needs 5 .* has 4"):
        render_sample(sphere_mesh, "evecs", 1, tmp_path / "x.png", grid=4)
    with pytest.raises(SpecError, match="without ':2'"):
        render_sample(sphere_mesh, "mass:2", None, tmp_path / "x.png")


@pytest.mark.parametrize("kwargs, message", [
    (dict(out="picture.jpg"), "must name a .png"),
    (dict(glyphs="frames", sample="graph"), "on a mesh; this sample is a graph"),
    (dict(glyphs="arrows"), "write one of: normals, frames"),
    (dict(column="faces"), "not one value per node"),
    (dict(column="evecs:1", component=2), "disagree"),
])
def test_bad_arguments_are_explained(sphere_mesh, karate, tmp_path, kwargs, message):
    sample = karate if kwargs.pop("sample", None) == "graph" else sphere_mesh
    args = dict(column=None, component=None, out=str(tmp_path / "x.png")) | kwargs
    with pytest.raises(GdlError, match=message):
        render_sample(sample, args.pop("column"), args.pop("component"), args.pop("out"), **args)


# ---- the README's pictures, from stored datasets -------------------------------------------------

def test_demo_pictures_from_stored_datasets(sphere_mesh, paracetamol, tmp_path):
    from storage import commit_version, write_shard
    from gdl_data.viz import render_demo_pictures

    uris = {}
    for name, sample in {"shapes": sphere_mesh, "molecules": paracetamol}.items():
        uri = str(tmp_path / name)
        commit_version(uri, [write_shard(uri, [dict(sample, sample_id=name)])], [])
        uris[name] = uri
    written = render_demo_pictures(uris, tmp_path / "docs")
    names = [p.rsplit("/", 1)[-1] for p in written]
    assert names == ["shapes_eigenfunctions.png", "shapes_geodesic.png", "shapes_frames.png",
                     "molecules_radius_graph.png"]
    load_png(written[0], (1600, 800))
    for path in written[1:]:
        load_png(path, (800, 600))


# ---- classes, unreachable regions, the CLI's index check ---------------------------------------

TAB_BLUE = dict(red=(20, 45), green=(105, 135), blue=(165, 195))
TAB_ORANGE = dict(red=(240, 255), green=(115, 140), blue=(0, 30))


def test_graph_classes_in_discrete_colours_over_the_whole_canvas(karate, tmp_path):
    from gdl_data.viz.fields import resolve_field
    assert resolve_field(karate, "y", None).categorical and not resolve_field(karate, "evecs", 1).categorical
    picture = render_sample(karate, "y", None, tmp_path / "y.png", size=SIZE)
    rgb = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    blue = np.argwhere(np.all([(rgb[..., c] >= lo) & (rgb[..., c] <= hi) for c, (lo, hi) in
                               enumerate(TAB_BLUE.values())], axis=0))
    assert len(blue) > 200 and count(rgb, **TAB_ORANGE) > 200        # one colour per faction
    assert np.ptp(blue[:, 1]) > 0.6 * SIZE[0]                           # spread over the canvas, not a square


def test_unreachable_nodes_are_grey_with_a_legend(karate, tmp_path):
    from gdl_data.viz.fields import resolve_field
    dist = np.full((1, 34), 2.0)
    dist[0, :5] = np.inf
    sample = {**karate, "geo_dist": dist, "geo_sources": np.array([10])}
    assert resolve_field(sample, "geo_dist", 0).unreachable
    rgb = load_png(render_sample(sample, "geo_dist:0", None, tmp_path / "u.png", size=SIZE))
    grey = dict(red=(205, 215), green=(205, 215), blue=(205, 215))
    legend = rgb[int(0.85 * SIZE[1]):, int(0.6 * SIZE[0]):]                # lower right corner
    assert count(legend, **grey) > 20 and count(rgb, **grey) > 200


def test_show_refuses_an_index_out_of_range_with_exit_2(tmp_path, capsys):
    from flows.cli import main
    from loader_samples import make_dataset
    make_dataset(str(tmp_path / "ds"), 4)
    assert main(["show", str(tmp_path / "ds"), "7", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "sample index 7 is out of range" in err and "4 samples, 0 to 3" in err and "Traceback" not in err


def test_unreachable_atoms_are_drawn_grey_not_dropped(paracetamol, tmp_path):
    n = len(paracetamol["pos"])
    dist = np.arange(n, dtype=float)[None]
    dist[0, -4:] = np.inf                                   # four atoms in another fragment
    sample = {**paracetamol, "geo_dist": dist, "geo_sources": np.array([0])}
    rgb = load_png(render_sample(sample, "geo_dist:0", None, tmp_path / "m.png", size=SIZE))
    grey = dict(red=(205, 215), green=(205, 215), blue=(205, 215))
    body = rgb[: int(0.9 * SIZE[1])]                        # above the legend row
    assert count(body, **grey) > 300                        # the grey balls themselves
