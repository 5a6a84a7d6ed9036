"""README's operator, parameter and spec-key tables are generated from the declarations
(pipelines/docs.py): this fails when README.md and the code disagree."""
import re

from gdl_data.ops import list_ops
from pipelines import docs


def _readme():
    with open(docs.README, encoding="utf-8") as fh:
        return fh.read()


def test_readme_tables_are_what_the_code_generates():
    text = _readme()
    assert docs.render(text) == text, "README.md is out of date; run: python -m pipelines.docs"


def test_a_drifted_table_is_caught_and_regenerated():
    text = _readme()
    drifted = text.replace("| `eigenbasis` | `k` | `64` |", "| `eigenbasis` | `k` | `32` |")
    assert drifted != text and docs.render(drifted) == text
    assert docs.main(["--check"]) == 0


def test_every_registered_op_and_spec_key_is_documented():
    text = _readme()
    hand_rows = set(re.findall(r"^\| `(\w+)` \| (?:mesh|all)", text, re.M))
    assert hand_rows == set(list_ops(builtin=True))
    from pipelines.spec import SPEC_KEYS
    from pipelines.train_spec import TRAIN_KEYS
    for key in SPEC_KEYS:
        assert f"| `{key}` |" in text
    for key in TRAIN_KEYS:
        assert f"`{key}`" in docs.training_keys()


def test_the_readme_duckdb_query_reads_only_the_current_version(tmp_path):
    import duckdb

    from loader_samples import make_dataset
    uri = str(tmp_path / "ds")
    make_dataset(uri, 5)
    current = make_dataset(uri, 3, seed=1)          # version 2; version 1's shards stay on disk
    sql = re.search(r"```sql\n(.*?)```", _readme(), re.S).group(1).replace(".gdl-work/storage/shapes", uri)
    con = duckdb.connect()
    *setup, query = [s for s in sql.split(";") if s.strip()]
    for statement in setup:
        con.execute(statement)
    rows = con.execute(query).fetchall()
    assert sorted(r[0] for r in rows) == sorted(r["sample_id"] for r in current)


def test_every_op_parameter_is_declared():
    """A parameter without `param(...)` would be checked nowhere and missing from the table."""
    import dataclasses

    from gdl_data.params import declared
    for name, op in list_ops(builtin=True).items():
        fields = {f.name for f in dataclasses.fields(op.params_type)}
        assert set(declared(op.params_type)) == fields, f"{name}: declare every field with param(...)"
