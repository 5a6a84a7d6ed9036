"""Raw demo data, one folder per domain, from real data that ships inside installed packages.

- mesh: pyvista's bundled example meshes (scans and CAD models, ≤ 1.4k vertices each), copied;
- molecule: RDKit's bundled 3D SDF test sets (CDK2 and c-Met ligands; the c-Met set carries a
  measured binding free energy, `r_exp_dg`, usable as a label), copied;
- graph: networkx's classic social networks: Zachary's karate club as GraphML with the club
  each member joined as node label `y` (0 = Mr. Hi, 1 = Officer) and interaction counts as
  weights; Les Misérables co-appearances as GML; Florentine families' marriages as a CSV
  edge list;
- sphere: HEALPix maps (nside 16) drawn by healpy.synfast from power-law spectra
  C_l ∝ l^-alpha, one per alpha with a fixed seed, as FITS (one written in NESTED order).

Deterministic (same bytes every time, so the same sample ids) and idempotent: a file already
there is left alone. Every file is written whole or not at all (temporary name, then rename).
"""
from __future__ import annotations

import os
import shutil
from typing import Callable

DOMAIN_FOLDERS = ("mesh", "molecule", "graph", "sphere")
PYVISTA_MESHES = ("airplane.ply", "ant.ply", "nut.ply", "sphere.ply", "globe.vtk", "hexbeam.vtk")
RDKIT_SDF_SETS = ("Fastcluster/testdata/cdk2.sdf", "FreeWilson/data/cmet_ligands.sdf")
# (file name, alpha, seed, pixel order written)
SYNFAST_MAPS = (("powerlaw_alpha1.fits", 1.0, 1, "RING"),
                ("powerlaw_alpha2.fits", 2.0, 2, "NESTED"),
                ("powerlaw_alpha3.fits", 3.0, 3, "RING"))
NSIDE = 16


def materialise_demo_data(folder: str) -> dict[str, str]:
    """Write the demo's raw files under `folder`/<domain>/; returns {domain: that folder}."""
    folders = {domain: os.path.join(folder, domain) for domain in DOMAIN_FOLDERS}
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    _write_meshes(folders["mesh"])
    _write_molecules(folders["molecule"])
    _write_graphs(folders["graph"])
    _write_spheres(folders["sphere"])
    return folders


def write_once(path: str, write: Callable[[str], None]) -> None:
    """Run `write(tmp)` and rename tmp to `path`, unless `path` exists already."""
    if os.path.exists(path):
        return
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _copy_from(source: str) -> Callable[[str], None]:
    return lambda target: shutil.copyfile(source, target)


def _write_meshes(folder: str) -> None:
    import pyvista.examples

    examples = os.path.dirname(pyvista.examples.__file__)
    for name in PYVISTA_MESHES:
        write_once(os.path.join(folder, name), _copy_from(os.path.join(examples, name)))


def _write_molecules(folder: str) -> None:
    from rdkit import RDConfig

    for relative in RDKIT_SDF_SETS:
        name = os.path.basename(relative)
        write_once(os.path.join(folder, name), _copy_from(os.path.join(RDConfig.RDContribDir, relative)))


def _write_graphs(folder: str) -> None:
    import networkx as nx

    def karate(target: str) -> None:
        graph = nx.karate_club_graph()
        for _, attrs in graph.nodes(data=True):
            attrs["y"] = int(attrs.pop("club") == "Officer")
        nx.write_graphml(graph, target)

    def florentine(target: str) -> None:
        with open(target, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("src,dst\n")
            fh.writelines(f"{u},{v}\n" for u, v in nx.florentine_families_graph().edges())

    write_once(os.path.join(folder, "karate_club.graphml"), karate)
    write_once(os.path.join(folder, "les_miserables.gml"), lambda t: nx.write_gml(nx.les_miserables_graph(), t))
    write_once(os.path.join(folder, "florentine_families.csv"), florentine)


def power_law_map(alpha: float, seed: int, nside: int = NSIDE):
    """A Gaussian random map (RING order) with angular power spectrum C_l = l^-alpha (C_0 = 0).

    healpy.synfast draws from numpy's global generator: it is seeded here and restored after.
    """
    import healpy
    import numpy as np

    lmax = 3 * nside - 1
    ell = np.arange(lmax + 1, dtype=np.float64)
    spectrum = np.zeros_like(ell)
    spectrum[1:] = ell[1:] ** -alpha
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return healpy.synfast(spectrum, nside, lmax=lmax)
    finally:
        np.random.set_state(state)


def _write_spheres(folder: str) -> None:
    import healpy

    for name, alpha, seed, ordering in SYNFAST_MAPS:
        def write(target: str, alpha=alpha, seed=seed, ordering=ordering) -> None:
            ring = power_law_map(alpha, seed)
            nest = ordering == "NESTED"
            healpy.write_map(target, healpy.reorder(ring, r2n=True) if nest else ring, nest=nest,
                             overwrite=True, dtype=ring.dtype)
        write_once(os.path.join(folder, name), write)


# Small organic molecules of QM9's kind (C, N, O, F; at most 9 heavy atoms), for generated SDFs.
SMALL_MOLECULES = ("CCO", "CC(=O)O", "c1ccccc1", "CC(C)O", "CCN", "OCCO", "CC#N", "C1CCCCC1", "CC(=O)N",
                   "c1ccncc1", "CCOC", "CC(C)(C)O", "NCCO", "C1CCOC1", "CC=O", "COC(=O)C", "c1ccoc1", "CCCC",
                   "CC(N)C(=O)O", "OC1CCCC1", "FC(F)F", "CCF", "C=CC=O", "N#CC#N", "Cc1ccccc1",
                   "OC(=O)CC(=O)O", "CN(C)C", "c1cc[nH]c1", "CC(O)CO", "O=C1CCCC1")


def write_conformer_sdf(path: str, count: int, seed: int = 0) -> None:
    """One SDF of `count` 3D molecules with hydrogens, QM9's shape (one file, many records).

    Each record is one of SMALL_MOLECULES embedded by RDKit's ETKDG (fixed seed), randomly
    rotated and jittered by 0.01 Å so that every record's bytes (its sample id) differ, with a
    numeric `gap` property as a label. Deterministic for a given (count, seed).
    """
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import AllChem

    rng = np.random.default_rng(seed)
    pool = []
    for smiles in SMALL_MOLECULES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        pool.append(mol)
    writer = Chem.SDWriter(path)
    for i in range(count):
        mol = Chem.Mol(pool[i % len(pool)])
        conformer = mol.GetConformer()
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        xyz = conformer.GetPositions() @ rotation.T + rng.normal(scale=0.01, size=(mol.GetNumAtoms(), 3))
        for atom, point in enumerate(xyz):
            conformer.SetAtomPosition(atom, point.tolist())
        mol.SetProp("_Name", f"mol{i}")
        mol.SetProp("gap", f"{rng.normal():.4f}")
        writer.write(mol)
    writer.close()
