"""Issue 4: `source:` and `output:` as s3:// URIs, against a real S3-compatible server process
(moto in server mode) on loopback."""
import os

import numpy as np
import pytest
import trimesh

from gdl_data import open_dataset
from pipelines.execute import run_pipeline
from pipelines.spec import parse_spec
from servers import moto_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_server():
    with moto_server() as endpoint:   # Dask workers started later inherit its environment
        yield endpoint


def test_reads_sources_from_and_writes_a_dataset_to_s3(tmp_path, s3_server):
    import s3fs
    from pipelines.cluster import dask_client
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir("gdl-test")
    local = tmp_path / "raw"
    local.mkdir()
    for i in range(3):
        mesh = trimesh.creation.icosphere(subdivisions=1)
        mesh.vertices *= 1 + 0.1 * np.random.default_rng(i).random((len(mesh.vertices), 1))
        mesh.export(local / f"m{i}.ply")
        fs.put(str(local / f"m{i}.ply"), f"gdl-test/raw/m{i}.ply")
    ops = {"eigenbasis": {"k": 4}}
    remote = parse_spec({"name": "s3", "domain": "mesh", "source": "s3://gdl-test/raw",
                         "output": "s3://gdl-test/datasets/meshes", "ops": ops})
    here = parse_spec({"name": "local", "domain": "mesh", "source": str(local),
                       "output": str(tmp_path / "ds"), "ops": ops})
    with dask_client(n_workers=1) as client:  # a cluster started after the endpoint is set
        first = run_pipeline(remote, client, progress=False)
        again = run_pipeline(remote, client, progress=False)
        run_pipeline(here, client, progress=False)
    assert first["sample_count"] == 3 and first["error_count"] == 0
    assert again["run"]["op_samples_computed"] == {}            # the cache works on S3 too
    assert fs.exists("gdl-test/datasets/meshes/manifest.json")
    assert not fs.exists("gdl-test/datasets/meshes/_lock.json")  # released
    ds_remote, ds_local = open_dataset("s3://gdl-test/datasets/meshes"), open_dataset(str(tmp_path / "ds"))
    assert len(ds_remote) == len(ds_local) == 3
    for a, b in zip(ds_remote, ds_local):
        assert os.path.basename(a["source"]) == os.path.basename(b["source"])
        for key in ("pos", "faces", "evals", "evecs", "mass"):
            assert a[key].tobytes() == b[key].tobytes()
