"""Raw data for the reference training tasks (pipelines/reference_specs/), labels included.

What is real in each, and where its label comes from:

- graph: Zachary's karate club from networkx, the demo's GraphML (pipelines/demo_data.py); the
  label is the faction each member joined (`y` node attribute, read by the graph reader).
- molecule: every 3D structure in RDKit's bundled SDF sets (CDK2, EGFR and c-Met ligands with
  hydrogens, 436 molecules), each written with an SDF tag `MolLogP`: its octanol/water
  partition coefficient by Wildman & Crippen's atom-contribution method (J. Chem. Inf. Comput.
  Sci. 1999) as RDKit computes it. The reader turns the tag into the column `prop_MolLogP`.
- sphere: Gaussian random HEALPix maps (nside 16) drawn by healpy.synfast from power-law
  spectra C_l ∝ l^-alpha, 30 per alpha in {1, 2, 3}, each divided by its standard deviation so
  that the class shows in the spectrum's shape and not in the map's amplitude; written as
  FITS to `alpha_<a>/`; the label is the folder (`labels: {from: folder}`).
- mesh: five real meshes shipped with pyvista (airplane, ant, nut, sphere scans/CAD models and
  the surface of the hex beam), 16 variants each: a random rotation, an anisotropic scaling
  (each axis x0.9-1.1: the nut is a flattened ellipsoid, a sphere must not become one), a
  random overall size (x0.5-2), a remeshing by quadric decimation (removing 0-50% of the
  triangles, so no two variants share a triangulation) and vertex noise (0.5% of the size);
  written as PLY to `<family>/`; the label is the folder. What is real: the five shapes;
  what is synthetic: the variations, drawn here.

Deterministic (fixed seeds) and idempotent: a file already there is left alone.
"""
from __future__ import annotations

import os

import numpy as np

from pipelines.demo_data import write_once, materialise_demo_data, power_law_map

RDKIT_3D_SETS = ("Fastcluster/testdata/cdk2.sdf", "PBF/testData/egfr.sdf", "FreeWilson/data/cmet_ligands.sdf")
SPHERE_ALPHAS = (1.0, 2.0, 3.0)
MAPS_PER_ALPHA = 30
MESH_FAMILIES = ("airplane.ply", "ant.ply", "nut.ply", "sphere.ply", "hexbeam.vtk")
VARIANTS_PER_MESH = 16


def materialise_reference_data(folder: str) -> dict[str, str]:
    """Write the raw files of the four reference tasks under `folder`; returns {domain: path}."""
    demo = materialise_demo_data(os.path.join(folder, "demo"))
    paths = {"graph": os.path.join(demo["graph"], "karate_club.graphml"),
             "molecule": os.path.join(folder, "molecule"), "sphere": os.path.join(folder, "sphere"),
             "mesh": os.path.join(folder, "mesh")}
    _write_logp_molecules(paths["molecule"])
    _write_power_law_maps(paths["sphere"])
    _write_mesh_families(paths["mesh"])
    return paths


def _write_logp_molecules(folder: str) -> None:
    from rdkit import Chem, RDConfig
    from rdkit.Chem import Crippen

    def write(target: str) -> None:
        writer = Chem.SDWriter(target)
        for relative in RDKIT_3D_SETS:
            for mol in Chem.SDMolSupplier(os.path.join(RDConfig.RDContribDir, relative), removeHs=False):
                if mol is None:
                    continue
                for name in list(mol.GetPropNames()):   # keep the structure and the label only
                    mol.ClearProp(name)
                mol.SetDoubleProp("MolLogP", Crippen.MolLogP(mol))
                writer.write(mol)
        writer.close()

    os.makedirs(folder, exist_ok=True)
    write_once(os.path.join(folder, "rdkit_3d_logp.sdf"), write)


def _write_power_law_maps(folder: str) -> None:
    import healpy

    for a, alpha in enumerate(SPHERE_ALPHAS):
        class_folder = os.path.join(folder, f"alpha_{alpha:g}")
        os.makedirs(class_folder, exist_ok=True)
        for i in range(MAPS_PER_ALPHA):
            def write(target: str, alpha=alpha, seed=1000 * (a + 1) + i) -> None:
                values = power_law_map(alpha, seed)
                healpy.write_map(target, values / values.std(), dtype=np.float64, overwrite=True)
            write_once(os.path.join(class_folder, f"map_{i:02d}.fits"), write)


def _mesh_variant(surface, rng):
    """A randomly rotated, stretched, resized, remeshed and noisy copy of a pyvista surface."""
    from scipy.spatial.transform import Rotation

    mesh = surface.decimate(float(rng.uniform(0.0, 0.5))) if rng.random() < 0.8 else surface.copy()
    points = np.asarray(mesh.points, dtype=np.float64)
    points = (points - points.mean(0)) / np.linalg.norm(np.ptp(points, axis=0))
    points = points * rng.uniform(0.9, 1.1, size=3) * rng.uniform(0.5, 2.0)
    points = points @ Rotation.random(random_state=rng).as_matrix().T
    points += rng.normal(scale=0.005 * np.linalg.norm(np.ptp(points, axis=0)), size=points.shape)
    mesh.points = points
    return mesh


def _write_mesh_families(folder: str) -> None:
    import pyvista
    import pyvista.examples

    examples = os.path.dirname(pyvista.examples.__file__)
    for f, name in enumerate(MESH_FAMILIES):
        family = name.split(".")[0]
        class_folder = os.path.join(folder, family)
        os.makedirs(class_folder, exist_ok=True)
        surface = pyvista.read(os.path.join(examples, name)).extract_surface(algorithm="dataset_surface")
        surface = surface.triangulate().clean()
        rng = np.random.default_rng(f)
        for i in range(VARIANTS_PER_MESH):
            variant = _mesh_variant(surface, rng)   # drawn in order, so file i is the same every time
            write_once(os.path.join(class_folder, f"{family}_{i:02d}.ply"),
                        lambda target, v=variant: v.save(target, binary=True))
