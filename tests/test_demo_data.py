"""The demo's raw data: real files from installed packages, deterministic, idempotent, readable.

References: networkx's karate club factions, healpy.anafast for the drawn maps' spectra.
"""
from __future__ import annotations

import hashlib
import os

import healpy
import networkx as nx
import numpy as np
import pytest

from pipelines.demo_data import SYNFAST_MAPS, materialise_demo_data
from reader_checks import read_samples


def digests(root: str) -> dict[str, str]:
    return {os.path.relpath(os.path.join(folder, name), root):
            hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for folder, _, names in os.walk(root) for name in names}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("raw"))
    return root, materialise_demo_data(root)


def test_one_folder_per_domain_and_every_file_reads_cleanly(demo):
    root, folders = demo
    assert folders == {d: os.path.join(root, d) for d in ("mesh", "molecule", "graph", "sphere")}
    counts = {domain: sum(len(read_samples(os.path.join(folder, name), domain)) for name in os.listdir(folder))
              for domain, folder in folders.items()}
    assert counts == {"mesh": 6, "molecule": 47 + 24, "graph": 3, "sphere": 3}


def test_same_bytes_every_time_and_existing_files_left_alone(demo, tmp_path):
    root, _ = demo
    materialise_demo_data(str(tmp_path))
    assert digests(str(tmp_path)) == digests(root)
    marker = os.path.join(tmp_path, "graph", "karate_club.graphml")
    with open(marker, "w") as fh:
        fh.write("kept")
    materialise_demo_data(str(tmp_path))
    assert open(marker).read() == "kept"
    assert not [name for name in digests(str(tmp_path)) if ".tmp" in name]


def test_karate_labels_are_the_factions(demo):
    _, folders = demo
    (graph,) = read_samples(os.path.join(folders["graph"], "karate_club.graphml"), "graph")
    reference = nx.karate_club_graph()
    assert graph.y.tolist() == [int(reference.nodes[n]["club"] == "Officer") for n in reference.nodes]
    assert graph.y.sum() == 17   # Zachary: 17 members followed the officer


@pytest.mark.parametrize("name,alpha", [(name, alpha) for name, alpha, _, _ in SYNFAST_MAPS])
def test_maps_have_the_power_law_spectrum_they_were_drawn_from(demo, name, alpha):
    _, folders = demo
    (sample,) = read_samples(os.path.join(folders["sphere"], name), "sphere")
    ell = np.arange(2, 2 * sample.nside + 1)
    measured = healpy.anafast(sample.values[:, 0], lmax=3 * sample.nside - 1)[ell]
    weights = 2 * ell + 1   # modes per multipole: the estimate's inverse variance
    for power in (alpha - 1, alpha, alpha + 1):
        ratio = np.sum(weights * measured / ell**-power) / weights.sum()
        # about 1000 modes: the true spectrum gives 1 within a few percent, a neighbour is off ×10
        assert (0.85 < ratio < 1.15) == (power == alpha), (power, ratio)
