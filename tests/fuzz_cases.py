"""Real files of every supported format, and seeded random byte mutations of them (issue 12).

Seeds come from data nobody here wrote: pyvista's ant and hexbeam meshes, RDKit's cdk2 ligand
set, networkx's karate club / Les Misérables / Florentine families, a healpy.synfast map. Each
is converted to every format of its domain by the format's own library.

Run as a script (`python fuzz_cases.py CASES.json LOG START`), it reads cases START.. with
`iter_samples` in this process and appends one JSON line per case to LOG: `{"start": i}`
before, `{"case": i, ...}` after, so a parent can tell which case a crash or a hang was in.
"""
from __future__ import annotations

import gzip
import json
import os
import sys
import time

import numpy as np

MUTATIONS = ("flip", "insert", "delete", "truncate", "duplicate", "zero", "big-number", "splice")


def write_seeds(folder: str) -> dict[str, list[str]]:
    """domain -> paths of real files, one (at least) per supported extension."""
    os.makedirs(folder, exist_ok=True)
    return {"mesh": _meshes(folder), "molecule": _molecules(folder), "graph": _graphs(folder),
            "sphere": _spheres(folder)}


def _meshes(folder: str) -> list[str]:
    import pyvista as pv
    import pyvista.examples
    import trimesh

    examples = os.path.dirname(pyvista.examples.__file__)
    ant = trimesh.load(os.path.join(examples, "ant.ply"), process=False)
    out = [os.path.join(examples, "ant.ply")]
    for ext in ("obj", "off", "stl", "glb"):
        out.append(os.path.join(folder, f"ant.{ext}"))
        ant.export(out[-1])
    out.append(os.path.join(folder, "ant_ascii.ply"))
    ant.export(out[-1], encoding="ascii")
    files = trimesh.exchange.gltf.export_gltf(trimesh.Scene(ant))
    for name, data in files.items():
        with open(os.path.join(folder, "ant.gltf" if name == "model.gltf" else name), "wb") as fh:
            fh.write(data)
    out.append(os.path.join(folder, "ant.gltf"))
    pv.read(os.path.join(examples, "ant.ply")).save(os.path.join(folder, "ant.vtp"))
    hexbeam = pv.read(os.path.join(examples, "hexbeam.vtk"))
    hexbeam.save(os.path.join(folder, "hexbeam.vtu"))
    with open(os.path.join(examples, "hexbeam.vtk"), "rb") as fh:
        raw = fh.read()
    with open(os.path.join(folder, "hexbeam.vtk.gz"), "wb") as fh:
        fh.write(gzip.compress(raw))
    return out + [os.path.join(folder, n) for n in ("ant.vtp", "hexbeam.vtu", "hexbeam.vtk.gz")] + \
        [os.path.join(examples, "hexbeam.vtk")]


def _molecules(folder: str) -> list[str]:
    from rdkit import Chem, RDConfig

    supplier = Chem.SDMolSupplier(os.path.join(RDConfig.RDContribDir, "Fastcluster/testdata/cdk2.sdf"),
                                  removeHs=False)
    mols = [next(supplier) for _ in range(3)]
    paths = {n: os.path.join(folder, n) for n in ("cdk2.sdf", "cdk2.mol", "cdk2.pdb", "cdk2.xyz", "cdk2.extxyz")}
    writer = Chem.SDWriter(paths["cdk2.sdf"])
    for mol in mols:
        writer.write(mol)
    writer.close()
    Chem.MolToMolFile(mols[0], paths["cdk2.mol"])
    Chem.MolToPDBFile(mols[0], paths["cdk2.pdb"])
    with open(paths["cdk2.xyz"], "w") as fh:
        fh.write("".join(Chem.MolToXYZBlock(m) for m in mols[:2]))
    with open(paths["cdk2.extxyz"], "w") as fh:
        for i, m in enumerate(mols[:2]):
            lines = Chem.MolToXYZBlock(m).splitlines()
            lines[1] = f'Properties=species:S:1:pos:R:3 energy={-10.5 * (i + 1)} pbc="F F F"'
            fh.write("\n".join(lines) + "\n")
    return list(paths.values())


def _graphs(folder: str) -> list[str]:
    import networkx as nx
    import pyarrow as pa
    import pyarrow.parquet as pq

    karate = nx.karate_club_graph()
    for node, attrs in karate.nodes(data=True):
        attrs["y"] = int(attrs.pop("club") == "Officer")
    paths = [os.path.join(folder, n) for n in ("karate.graphml", "lesmis.gml", "florentine.csv", "florentine.parquet")]
    nx.write_graphml(karate, paths[0])
    nx.write_gml(nx.les_miserables_graph(), paths[1])
    edges = list(nx.florentine_families_graph().edges())
    with open(paths[2], "w") as fh:
        fh.write("src,dst,weight\n" + "".join(f"{u},{v},{1 + len(u) % 3}\n" for u, v in edges))
    with open(os.path.join(folder, "florentine.nodes.csv"), "w") as fh:
        fh.write("id,x1,y\n" + "".join(f"{n},{len(n)},{i % 2}\n"
                                       for i, n in enumerate(nx.florentine_families_graph().nodes())))
    pq.write_table(pa.table({"src": [u for u, _ in edges], "dst": [v for _, v in edges]}), paths[3])
    return paths


def _spheres(folder: str) -> list[str]:
    import healpy

    from pipelines.demo_data import power_law_map

    ring = power_law_map(2.0, seed=3, nside=8)
    paths = [os.path.join(folder, n) for n in ("map.fits", "map_nested.fits.gz", "map.npy")]
    healpy.write_map(paths[0], ring, overwrite=True, dtype=ring.dtype)
    nested = os.path.join(folder, "nested.fits")
    healpy.write_map(nested, healpy.reorder(ring, r2n=True), nest=True, overwrite=True, dtype=ring.dtype)
    with open(nested, "rb") as fh, open(paths[1], "wb") as out:
        out.write(gzip.compress(fh.read()))
    os.unlink(nested)
    np.save(paths[2], np.stack([ring, ring ** 2], axis=1))
    return paths


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of `data`: (its name, the mutated bytes)."""
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    n = len(data)
    at = int(rng.integers(max(n, 1)))
    span = int(rng.integers(1, max(2, min(n // 4, 4096))))
    if kind == "flip":
        out = bytearray(data)
        for i in rng.integers(0, n, size=int(rng.integers(1, 20))):
            out[i] ^= 1 << int(rng.integers(8))
        return kind, bytes(out)
    if kind == "insert":
        return kind, data[:at] + rng.bytes(span) + data[at:]
    if kind == "delete":
        return kind, data[:at] + data[at + span:]
    if kind == "truncate":
        return kind, data[:at]
    if kind == "duplicate":
        return kind, data[:at + span] + data[at:at + span] * int(rng.integers(2, 50)) + data[at + span:]
    if kind == "zero":
        return kind, data[:at] + bytes(span) + data[at + span:]
    if kind == "big-number":   # a count or coordinate made huge, negative or not a number
        digits = [i for i in range(n) if 48 <= data[i] <= 57][:4096]
        at = digits[int(rng.integers(len(digits)))] if digits else at
        word = [b"99999999999", b"-1", b"4294967296", b"nan", b"1e308", b"0"][int(rng.integers(6))]
        return kind, data[:at] + word + data[at + 1:]
    # splice: two neighbouring chunks of the file swapped
    return kind, data[:at] + data[at + span:at + 2 * span] + data[at:at + span] + data[at + 2 * span:]


def make_cases(seeds: dict[str, list[str]], folder: str, per_seed: int, seed: int = 12) -> list[dict]:
    """`per_seed` mutated copies of every seed file, named case<i><ext>, beside its siblings."""
    from gdl_data.readers import extension

    rng = np.random.default_rng(seed)
    cases = []
    for domain, paths in seeds.items():
        target = os.path.join(folder, domain)
        os.makedirs(target, exist_ok=True)
        for path in paths:
            with open(path, "rb") as fh:
                data = fh.read()
            for _ in range(per_seed):
                kind, mutated = mutate(data, rng)
                name = f"case{len(cases):04d}{extension(path)}"
                with open(os.path.join(target, name), "wb") as fh:
                    fh.write(mutated)
                cases.append({"path": os.path.join(target, name), "domain": domain, "seed": os.path.basename(path),
                              "mutation": kind})
    return cases


def read_case(path: str, domain: str) -> dict:
    from gdl_data.errors import ReadError
    from gdl_data.readers import iter_samples

    start = time.perf_counter()
    try:
        items = list(iter_samples(path, domain))
    except BaseException as exc:  # noqa: BLE001 - a reader that raises is the finding
        return {"outcome": "raised", "error": f"{type(exc).__name__}: {exc}"[:300],
                "seconds": time.perf_counter() - start}
    errors = [i for i in items if isinstance(i, ReadError)]
    return {"outcome": "samples" if len(errors) < len(items) else ("errors" if items else "nothing"),
            "samples": len(items) - len(errors), "kinds": sorted({e.kind for e in errors}),
            "named": all(str(e).startswith(path) for e in errors), "seconds": time.perf_counter() - start}


def main(cases_json: str, log: str, start: int) -> None:
    # the readers' libraries imported first, so a case's time is its own, not an import's
    import astropy.io.fits  # noqa: F401
    import healpy  # noqa: F401
    import networkx  # noqa: F401
    import pyvista  # noqa: F401
    import rdkit.Chem  # noqa: F401
    import trimesh  # noqa: F401
    with open(cases_json) as fh:
        cases = json.load(fh)
    with open(log, "a", buffering=1) as out:
        for i in range(start, len(cases)):
            out.write(json.dumps({"start": i}) + "\n")
            out.write(json.dumps({"case": i, **read_case(cases[i]["path"], cases[i]["domain"])}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
