"""Shared by the issue-12 tests: small real meshes, a spec, and a snapshot of a folder's bytes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import trimesh

from pipelines.spec import parse_spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GDL = [sys.executable, "-m", "flows.cli"]


def write_meshes(folder, count=3):
    """`count` perturbed icospheres as PLY (trimesh writes them: real files of a real format)."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        mesh = trimesh.creation.icosphere(subdivisions=1)
        mesh.vertices = mesh.vertices * (1 + 0.05 * np.random.default_rng(i).random((len(mesh.vertices), 1)))
        mesh.export(os.path.join(folder, f"m{i}.ply"))
    return folder


def mesh_spec(source, output, name="t", domain="mesh", ops=None, **extra):
    ops = {"eigenbasis": {"k": 4}} if ops is None else ops
    return parse_spec({"name": name, "domain": domain, "source": str(source), "output": str(output),
                       "ops": ops, "shard_size": 2, **extra})


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), links by their target."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = b"link:" + os.readlink(path).encode()
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    out[rel] = fh.read()
            else:
                out[rel] = b"dir" if os.path.isdir(path) else b"special"
    return out


def gdl(*args, timeout=240, env_extra=None):
    """Run the `gdl` CLI in a real subprocess; (exit code, stdout + stderr)."""
    env = {**os.environ, "PYTHONPATH": REPO, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
           **(env_extra or {})}
    proc = subprocess.run(GDL + list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    return proc.returncode, proc.stdout + proc.stderr
