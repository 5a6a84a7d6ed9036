"""The demo's inputs: raw files from installed packages, and one spec per domain."""
from __future__ import annotations

import os
import shutil
from importlib import resources

from pipelines.demo_data import materialise_demo_data

DEMO_SPECS = ("meshes", "molecules", "graphs", "spheres", "karate")
DEMO_TRAINING = "karate.train"


def prepare_demo(workdir: str) -> tuple[list[str], str]:
    """Write raw sample data under workdir/raw and the specs under workdir/specs; returns the
    preprocessing spec paths and the training spec path."""
    materialise_demo_data(os.path.join(workdir, "raw"))
    spec_dir = os.path.join(workdir, "specs")
    os.makedirs(spec_dir, exist_ok=True)
    paths = []
    for name in DEMO_SPECS + (DEMO_TRAINING,):
        target = os.path.join(spec_dir, f"{name}.yaml")
        with resources.as_file(resources.files("pipelines") / "demo_specs" / f"{name}.yaml") as src:
            shutil.copyfile(src, target)
        paths.append(target)
    return paths[:-1], paths[-1]
