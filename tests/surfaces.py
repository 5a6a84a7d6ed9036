"""Small test surfaces whose geometry is known analytically (frames, neighbourhoods, gradients).

Built here by hand or by trimesh, never by gdl_data code, so tests can use them as references.
"""
from __future__ import annotations

import numpy as np
import trimesh


def mesh_record(pos, faces, source="test-mesh", **extra):
    return {"domain": "mesh", "source": source, "pos": np.asarray(pos, dtype=np.float64),
            "faces": np.asarray(faces, dtype=np.int64).reshape(-1, 3), **extra}


def sphere_record(nside):
    import healpy

    pos = np.stack(healpy.pix2vec(nside, np.arange(12 * nside * nside)), axis=1)
    return {"domain": "sphere", "source": f"healpix-{nside}", "nside": nside, "pos": pos,
            "values": np.zeros((len(pos), 1))}


def flat_grid(nx=7, ny=6, jitter=0.0, seed=0):
    """A planar triangulated grid in z = 0, wound counter-clockwise seen from +z.

    jitter moves interior vertices in the plane (irregular but still flat).
    Returns pos (n, 3), faces (f, 3), interior (n,) bool.
    """
    xs, ys = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="xy")
    pos = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    interior = ((xs > 0) & (xs < nx - 1) & (ys > 0) & (ys < ny - 1)).ravel()
    pos[interior, :2] += jitter * (np.random.default_rng(seed).random((interior.sum(), 2)) - 0.5)
    faces = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i, (j + 1) * nx + i + 1
            faces += [[a, b, d], [a, d, c]]
    return pos, np.array(faces), interior


def cylinder(around=24, along=6):
    """An open unit-radius cylinder around the z axis; returns pos, faces, rings of vertex ids."""
    phi = np.arange(around) * 2 * np.pi / around
    heights = np.linspace(0.0, 1.0, along)
    pos = np.array([[np.cos(a), np.sin(a), z] for z in heights for a in phi])
    faces = []
    for j in range(along - 1):
        for i in range(around):
            a, b = j * around + i, j * around + (i + 1) % around
            faces += [[a, b, b + around], [a, b + around, a + around]]
    rings = np.arange(around * along).reshape(along, around)
    return pos, np.array(faces), rings


def icosphere(subdivisions=3):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def edge_lookup(edge_index):
    """{(source, target): column} for finding a loop's edges in an op's edge_index."""
    return {(int(a), int(b)): i for i, (a, b) in enumerate(np.asarray(edge_index).T)}


def wrap(angle):
    """An angle mapped to (−π, π]."""
    return np.angle(np.exp(1j * np.asarray(angle)))


def run_op(name, record, **params):
    """Parse `params` as a spec would for the record's domain, then run the op on it."""
    from gdl_data.ops import get_op

    op = get_op(name)
    return op.run(record, op.parse_params(params, record["domain"]))
