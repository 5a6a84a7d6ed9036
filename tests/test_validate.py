"""`gdl validate` and the check that opens preprocess/train/serve: every problem at once, one
line each, exit 2, before Prefect or Dask are imported, nothing written."""
import os
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from gdl_data.errors import SpecError, SpecProblems
from gdl_data.ops import get_op
from pipelines.spec import parse_spec
from surfaces import icosphere, mesh_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gdl(*args, code: str | None = None):
    """Run the CLI in a fresh interpreter (so imports are counted from zero)."""
    env = {**os.environ, "PYTHONPATH": REPO}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


@pytest.fixture()
def meshes(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    pos, faces = icosphere(1)
    trimesh.Trimesh(pos, faces, process=False).export(folder / "ball.ply")
    return folder


def _write(tmp_path, text: str, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_problem_is_reported_at_once_one_line_each():
    raw = {"name": False, "domain": "mesh", "source": "raw", "output": "ds", "shard_sise": 4,
           "keep_versions": 0,
           "ops": {"eigenbasis": {"k": 0, "kk": 1}, "eigenbsis": {}, "frames": {"weighting": "cotan"}}}
    with pytest.raises(SpecProblems) as info:
        parse_spec(raw, where="s.yaml")
    lines = info.value.problems
    expected = ["unknown key 'shard_sise'; did you mean 'shard_size'", "name must be a string, got False",
                "keep_versions must be an integer ≥ 1, got 0; write e.g. keep_versions: 5",
                "op 'eigenbasis' has no parameter 'kk'; did you mean 'k'",
                "op 'eigenbasis': k must be an integer ≥ 1, got 0; write e.g. k: 64",
                "unknown op 'eigenbsis'; did you mean 'eigenbasis'",
                "op 'frames': weighting must be one of 'area', 'angle', 'uniform', got 'cotan'"]
    assert len(lines) == len(expected)
    for line, words in zip(lines, expected):
        assert line.startswith("s.yaml: ") and words in line and "\n" not in line


def test_yaml_booleans_are_named_as_such(tmp_path, meshes):
    path = _write(tmp_path, f"name: off\ndomain: mesh\nsource: {meshes}\noutput: no\n")
    with pytest.raises(SpecError) as info:
        from pipelines.spec import load_spec
        load_spec(path)
    lines = info.value.problems
    assert len(lines) == 2 and all("YAML reads yes/no/on/off/true/false as booleans" in line for line in lines)


def test_ops_run_in_dependency_order_whatever_the_spec_order():
    """neighborhoods reads frames: listed first, it must still see the spec's frames."""
    def transport(ops):
        spec = parse_spec({"name": "t", "domain": "mesh", "source": "r", "output": "o", "ops": ops})
        sample = mesh_record(*icosphere(2))
        for step in spec.ops:
            sample.update(get_op(step.name).run(sample, step.params))
        return [s.name for s in spec.ops], sample["transport"]

    angle = {"weighting": "angle"}
    names, late = transport({"neighborhoods": {}, "frames": angle})
    _, early = transport({"frames": angle, "neighborhoods": {}})
    _, default = transport({"frames": {}, "neighborhoods": {}})
    assert names == ["frames", "neighborhoods"]
    np.testing.assert_array_equal(late, early)
    assert np.abs(default - early).max() > 1e-6      # the frames parameters do reach transport


def test_validate_cli_lists_problems_fast_without_prefect_or_dask(tmp_path, meshes):
    path = _write(tmp_path, f"name: s\ndomain: mesh\nsource: {meshes}\noutput: {tmp_path}/ds\n"
                            "shard_sise: 4\nops:\n  geodesic: {sources: 4}\n")
    code = ("import sys; from flows.cli import main; rc = main(['validate', %r]); "
            "print(rc, 'prefect' in sys.modules, 'distributed' in sys.modules)" % path)
    run = _gdl(code=code)
    assert run.stdout.split() == ["2", "False", "False"]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in run.stderr
    assert "did you mean 'shard_size'" in lines[0] and "did you mean 'geodesics'" in lines[1]


def test_wrong_domain_names_the_domain_of_the_files(tmp_path, meshes):
    path = _write(tmp_path, f"name: s\ndomain: molecule\nsource: {meshes}\noutput: {tmp_path}/ds\n")
    run = _gdl("validate", path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "holds no molecule files" in run.stderr and "1 mesh files (e.g. ball.ply); write domain: mesh" in run.stderr


def test_a_refused_preprocess_creates_nothing(tmp_path):
    out = tmp_path / "ds"
    path = _write(tmp_path, f"name: s\ndomain: mesh\nsource: {tmp_path}/nowhere\noutput: {out}\n")
    run = _gdl("preprocess", path, "--debug")          # --debug after the subcommand is accepted
    assert run.returncode == 2 and "does not exist" in run.stderr
    assert not out.exists()


def test_a_valid_spec_passes(tmp_path, meshes):
    path = _write(tmp_path, f"name: s\ndomain: mesh\nsource: {meshes}\noutput: {tmp_path}/ds\n"
                            "ops: {eigenbasis: {k: 4}}\n")
    run = _gdl("validate", path)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "ds").exists()


def test_labels_are_checked_against_the_source(tmp_path, meshes):
    path = _write(tmp_path, f"name: s\ndomain: mesh\nsource: {meshes}\noutput: {tmp_path}/ds\n"
                            "labels: {table: missing.csv}\n")
    from pipelines.validate import spec_problems
    problems = spec_problems(path)
    assert len(problems) == 1 and "missing.csv" in problems[0]


def test_a_training_spec_lists_every_problem_too():
    from pipelines.train_spec import parse_train_spec
    raw = {"name": "k", "dataset": "d", "model": "gcnn", "task": "nodes", "target": "y", "epoch": 3,
           "epochs": 0, "output": "runs", "split": {"test": 1.5}}
    with pytest.raises(SpecProblems) as info:
        parse_train_spec(raw, where="t.yaml")
    lines = info.value.problems
    for words in ("unknown key 'epoch'; did you mean 'epochs'", "unknown model 'gcnn'; did you mean 'gcn'",
                  "task 'nodes' is not one of", "epochs must be an integer ≥ 1, got 0",
                  "split.test must be a number in (0, 1), got 1.5"):
        assert sum(words in line for line in lines) == 1, words
    assert len(lines) == 5 and all(line.startswith("t.yaml: ") for line in lines)


def test_spec_files_read_as_pure_python_yaml_reads_them():
    """read_spec_file uses libyaml's safe loader when PyYAML has it: every bundled spec, and the
    forms that differ between YAML versions, read as yaml.safe_load reads them."""
    import glob

    import yaml

    from pipelines.spec import read_spec_file
    paths = sorted(glob.glob(os.path.join(REPO, "pipelines", "*_specs", "*.yaml")))
    assert len(paths) >= 6
    for path in paths:
        with open(path) as fh:
            assert read_spec_file(path) == yaml.safe_load(fh), path


def test_preprocess_reads_its_spec_file_once(tmp_path, meshes, monkeypatch):
    """The check and the run use one reading of the spec: nothing can change in between, and a
    warm server's child parsed it three times (4 ms) before."""
    import builtins

    from flows import cli
    spec = _write(tmp_path, f"name: m\ndomain: mesh\nsource: {meshes}\noutput: {tmp_path / 'ds'}\n"
                            "ops:\n  eigenbasis: {k: 2}\n")
    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting_open)
    assert cli.main(["preprocess", spec]) == 0
    assert opened.count(spec) == 1
