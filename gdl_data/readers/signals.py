"""Many signals on one graph or mesh: a domain file plus a table of signals, one sample per row
or per window of rows (traffic forecasting: x = `window` rows, y = the next `horizon` rows).

Layout (one folder may hold several such groups, and ordinary files beside them):

    sensors.graphml          the domain: any graph (or, in a mesh spec, mesh) format gdl-data reads
    sensors.signals.csv      the signals: one row per time step or sample, one column per node
                             (.csv, .parquet: a header of node ids, an optional first column
                             `time` that is skipped; .npy, .npz: a (T, n) array, columns in the
                             domain's node order; an .npz holds one array or one named `signals`)
    sensors.signals.yaml     optional: how rows become samples
                                 window: 12      # rows per sample -> x (n, window); default 1
                                 horizon: 3      # the rows after it -> y (n, horizon); default 0
                                 stride: 1       # rows between consecutive samples; default 1
                                 missing: error  # NaN/empty cells: error (default) | zero

Sample i holds rows [i*stride, i*stride + window + horizon). Each sample is a Graph (or Mesh)
with the domain's structure, `x` and `y` from the table (a graph file's own node attributes are
not used), and `shares_domain` set: its geometry is stored once (pipelines/geometry.py).
Mesh columns are vertex indices 0..n-1.

Samples are records (gdl_data/readers/__init__.py): CSV and .npy tables are split into one
record per window, keyed by the window's own bytes plus the hash of the companions (the domain
file, its node table, the .yaml), so editing a row recomputes only the windows that hold it and
editing the domain recomputes all. Parquet and .npz tables are read whole (one unit of work).

Checked (a ReadError naming the table): a missing or ambiguous domain file, a bad domain file,
column ids that are not nodes of the graph, nodes without a column, a table width that is not
the node count, fewer rows than window + horizon, NaN or empty cells (with `missing: error`),
bad parameters.
"""
from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np

from gdl_data.domains import Graph, Mesh, content_id
from gdl_data.errors import ReadError
from gdl_data.readers import (SIGNALS_EXTENSIONS, extension, iter_samples, register_companions,
                              register_reader, register_records, register_sidecar, record_salt,
                              supported_extensions)
from gdl_data.readers.validate import never_raises, read_raw

PARAMS_SUFFIX = ".signals.yaml"
TIME_COLUMN = "time"
PARAMS = {"window": 1, "horizon": 0, "stride": 1, "missing": "error"}


@dataclass(eq=False)
class MeshSignal(Mesh):
    """A mesh with per-vertex signals `x` (n, window) and targets `y` (n, horizon)."""

    x: np.ndarray | None = None
    y: np.ndarray | None = None
    shares_domain: ClassVar[bool] = True

    def arrays(self):
        return {**super().arrays(), "x": self.x, "y": self.y}


@dataclass(eq=False)
class GraphSignal(Graph):
    """A graph with node signals `x` (n, window) and targets `y` (n, horizon)."""

    shares_domain: ClassVar[bool] = True


def stem_of(table: str) -> str:
    """`folder/sensors` for `folder/sensors.signals.csv`."""
    return table[: -len(extension(table))]


def domain_file_of(table: str, domain: str) -> str:
    """The domain file beside a signals table (exactly one), else a ReadError naming the table."""
    stem = stem_of(table)
    exts = [e for e in supported_extensions(domain) if e not in SIGNALS_EXTENSIONS]
    found = [stem + e for e in exts if os.path.exists(stem + e)]
    name = os.path.basename(stem)
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise ReadError(table, f"{what} {domain} file named {name}.* beside it "
                               f"({', '.join(os.path.basename(f) for f in found) or 'write e.g. ' + name + exts[0]}); "
                               f"a signals table needs exactly one domain file", kind="missing-domain")
    return found[0]


def companions(table: str, domain: str) -> list[str]:
    """The files every sample of `table` depends on: its domain file, that file's node table, the
    parameters file. (Missing domain files are reported when reading, not here.)"""
    stem = stem_of(table)
    out = [p for p in glob.glob(glob.escape(stem) + ".*") if p != table and extension(p) not in SIGNALS_EXTENSIONS]
    return out


@dataclass
class SignalsContext:
    """What each window of one table needs: the domain sample, parameters, table layout, key salt."""

    table: str
    domain: Graph | Mesh
    window: int
    horizon: int
    stride: int
    missing: str
    salt: bytes
    columns: list[str] = field(default_factory=list)   # CSV/Parquet header, time column excluded
    order: np.ndarray | None = None                     # table column of each node
    skip_time: bool = False
    npy: tuple[np.dtype, int, int] | None = None        # .npy: dtype, row width, data offset

    @property
    def rows(self) -> int:
        return self.window + self.horizon


def read_params(table: str) -> dict[str, Any]:
    """The windowing parameters of a table (defaults without a .signals.yaml), checked."""
    path = stem_of(table) + PARAMS_SUFFIX
    params = dict(PARAMS)
    if not os.path.exists(path):
        return params
    import yaml
    try:
        given = yaml.safe_load(read_raw(path, table)) or {}
    except yaml.YAMLError as exc:
        raise ReadError(table, f"{os.path.basename(path)} is not valid YAML: {exc}", kind="bad-parameters") from None
    if not isinstance(given, dict) or set(given) - set(PARAMS):
        raise ReadError(table, f"{os.path.basename(path)} may set only {', '.join(PARAMS)}; found "
                               f"{', '.join(map(str, given)) if isinstance(given, dict) else given!r}",
                        kind="bad-parameters")
    params.update(given)
    for key, low in (("window", 1), ("horizon", 0), ("stride", 1)):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ReadError(table, f"{os.path.basename(path)}: {key} must be an integer >= {low}, got {value!r}",
                            kind="bad-parameters")
    if params["missing"] not in ("error", "zero"):
        raise ReadError(table, f"{os.path.basename(path)}: missing must be error or zero, got "
                               f"{params['missing']!r}", kind="bad-parameters")
    return params


def load_domain(table: str, domain: str) -> Graph | Mesh:
    path = domain_file_of(table, domain)
    samples = list(iter_samples(path, domain))
    bad = [s for s in samples if isinstance(s, ReadError)]
    if bad:
        raise ReadError(table, f"domain file {os.path.basename(path)}: {bad[0].detail}", kind=bad[0].kind)
    if len(samples) != 1:
        raise ReadError(table, f"domain file {os.path.basename(path)} holds {len(samples)} samples, "
                               f"not one", kind="missing-domain")
    return samples[0]


def node_names(sample: Graph | Mesh) -> list[str]:
    if isinstance(sample, Graph):
        return [str(v) for v in sample.node_ids]
    return [str(i) for i in range(len(sample.pos))]


def column_order(table: str, columns: list[str], sample: Graph | Mesh) -> np.ndarray:
    """For each node of the domain, its column in the table; ReadError on unknown or missing ids."""
    nodes = node_names(sample)
    index = {node: i for i, node in enumerate(nodes)}
    what = "node of the graph" if isinstance(sample, Graph) else "vertex index of the mesh"
    seen: dict[str, int] = {}
    for i, column in enumerate(columns):
        if column not in index:
            raise ReadError(table, f"column '{column}' is not a {what} ({len(nodes)} of them, e.g. "
                                   f"{', '.join(nodes[:3])})", kind="unknown-node")
        if column in seen:
            raise ReadError(table, f"column '{column}' appears twice", kind="duplicate-node")
        seen[column] = i
    if len(seen) != len(nodes):
        absent = [n for n in nodes if n not in seen]
        raise ReadError(table, f"shape mismatch: the table has {len(seen)} node columns, the domain "
                               f"{len(nodes)} nodes; no column for {', '.join(absent[:5])}"
                               f"{' ...' if len(absent) > 5 else ''}", kind="shape-mismatch")
    return np.array([seen[n] for n in nodes], dtype=np.int64)


HEAD_BYTES = 1 << 20     # enough for a header line of ~50k node ids, or a .npy header


def load_context(table: str, domain: str) -> SignalsContext:
    """Read the companions and the table's header (not its rows)."""
    params = read_params(table)
    sample = load_domain(table, domain)
    ctx = SignalsContext(table, sample, params["window"], params["horizon"], params["stride"],
                         params["missing"], record_salt(table, domain))
    with open(table, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    ext = extension(table)
    if ext == ".signals.npy":
        dtype, width, offset = _npy_layout(head, table)
        if width != len(node_names(sample)):
            raise ReadError(table, f"shape mismatch: the array has {width} columns, the domain "
                                   f"{len(node_names(sample))} nodes", kind="shape-mismatch")
        ctx.npy, ctx.order = (dtype, width, offset), np.arange(width)
    elif ext == ".signals.csv":
        import csv
        names = next(csv.reader([head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")]), [])
        _set_columns(ctx, [n.strip() for n in names])
    return ctx


def _set_columns(ctx: SignalsContext, names: list[str]) -> None:
    ctx.skip_time = bool(names) and names[0] == TIME_COLUMN
    ctx.columns = names[1:] if ctx.skip_time else names
    ctx.order = column_order(ctx.table, ctx.columns, ctx.domain)


def _npy_layout(head: bytes, table: str) -> tuple[np.dtype, int, int]:
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(stream)
    except ValueError as exc:
        raise ReadError(table, f"not a .npy array: {exc}", kind="parse-error") from None
    if len(shape) != 2 or fortran or dtype.kind not in "iuf":
        raise ReadError(table, f"holds a {'Fortran-order ' if fortran else ''}{dtype} array of shape {shape}; "
                               f"write a (time steps, nodes) array of numbers", kind="shape-mismatch")
    return dtype, shape[1], stream.tell()


def window_count(rows: int, ctx: SignalsContext) -> int:
    if rows < ctx.rows:
        raise ReadError(ctx.table, f"the table has {rows} rows, fewer than window + horizon = {ctx.rows}",
                        kind="too-short")
    return (rows - ctx.rows) // ctx.stride + 1


def split_table(data: bytes, ctx: SignalsContext) -> list[tuple[int, int]]:
    """Byte span of each window: CSV rows are lines after the header, .npy rows fixed-size."""
    if ctx.npy is not None:
        dtype, width, offset = ctx.npy
        row = dtype.itemsize * width
        count = window_count((len(data) - offset) // row, ctx)
        return [(offset + i * ctx.stride * row, offset + (i * ctx.stride + ctx.rows) * row) for i in range(count)]
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    starts = np.concatenate([[0], ends])
    ends = np.concatenate([ends, [len(data)]])
    lines = [(int(s), int(e)) for s, e in zip(starts[1:], ends[1:]) if data[s:e].strip()]
    count = window_count(len(lines), ctx)
    return [(lines[i * ctx.stride][0], lines[i * ctx.stride + ctx.rows - 1][1]) for i in range(count)]


def parse_window(data: bytes, source: str, ctx: SignalsContext) -> Graph | Mesh:
    """One record (a window's rows) -> one sample."""
    if ctx.npy is not None:
        dtype, width, _ = ctx.npy
        values = np.frombuffer(data, dtype=dtype).reshape(-1, width)
    else:
        values = _csv_values(data, ctx, header=False)
    if len(values) != ctx.rows:
        raise ReadError(source, f"the window holds {len(values)} rows, not window + horizon = {ctx.rows}",
                        kind="truncated")
    first = int(source.rsplit("#", 1)[1]) * ctx.stride
    return window_sample(values, ctx, source, content_id(ctx.salt + data), first)


def _csv_values(data: bytes, ctx: SignalsContext, header: bool) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    names = ([TIME_COLUMN] if ctx.skip_time else []) + ctx.columns
    read = pacsv.ReadOptions(column_names=None if header else names, autogenerate_column_names=False)
    convert = pacsv.ConvertOptions(column_types={n: pa.float64() for n in ctx.columns},
                                   include_columns=ctx.columns, null_values=[""], strings_can_be_null=True)
    table = pacsv.read_csv(io.BytesIO(data), read_options=read, convert_options=convert)
    return _numpy(table, ctx.columns)


def _numpy(table, columns: list[str]) -> np.ndarray:
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                            for c in columns]) if columns else np.zeros((table.num_rows, 0))


def window_sample(values: np.ndarray, ctx: SignalsContext, source: str, sample_id: str,
                  first_row: int) -> Graph | Mesh:
    """A sample from a window's rows (table column order), checked for missing values."""
    values = np.asarray(values, dtype=np.float64)[:, ctx.order]
    bad = ~np.isfinite(values)
    if bad.any():
        row, node = (int(v[0]) for v in np.nonzero(bad))
        if ctx.missing == "error" or np.isinf(values).any():
            raise ReadError(source, f"{int(bad.sum())} cells are NaN, empty or infinite (first: row "
                                    f"{first_row + row}, node {node_names(ctx.domain)[node]}); fill them, "
                                    f"or write missing: zero in {os.path.basename(stem_of(ctx.table))}"
                                    f"{PARAMS_SUFFIX}", kind="missing-values")
        values = np.where(bad, 0.0, values)
    x, y = values[:ctx.window].T.copy(), values[ctx.window:].T.copy() if ctx.horizon else None
    d = ctx.domain
    if isinstance(d, Graph):
        return GraphSignal(source=source, sample_id=sample_id, num_nodes=d.num_nodes, edge_index=d.edge_index,
                           edge_weight=d.edge_weight, x=x, y=y, node_ids=d.node_ids)
    return MeshSignal(source=source, sample_id=sample_id, pos=d.pos, faces=d.faces, x=x, y=y)


def whole_table(path: str, ctx: SignalsContext) -> np.ndarray:
    """All rows of a table (T, columns), for tables read whole (Parquet, .npz) and for reporting
    why a CSV/.npy table could not be split."""
    ext = extension(path)
    data = read_raw(path, path)
    if ext == ".signals.npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext == ".signals.npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            name = "signals" if "signals" in names else names[0] if len(names) == 1 else None
            if name is None:
                raise ReadError(path, f"holds arrays {', '.join(names)}: keep one, or name it 'signals'",
                                kind="parse-error")
            values = npz[name]
        width = len(node_names(ctx.domain))
        if values.ndim != 2 or values.shape[1] != width:
            raise ReadError(path, f"shape mismatch: array {name} has shape {values.shape}; the domain has "
                                  f"{width} nodes, so write (time steps, {width})", kind="shape-mismatch")
        ctx.order = np.arange(width)
        return values
    if ext == ".signals.parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(io.BytesIO(data))
        _set_columns(ctx, table.column_names)
        return _numpy(table, ctx.columns)
    return _csv_values(data, ctx, header=True)


def read_signals(path: str, source: str, domain: str) -> Iterator[Graph | Mesh | ReadError]:
    """Every window of a table, read whole; a bad window is a ReadError and the next ones go on."""
    try:
        ctx = load_context(path, domain)
        values = whole_table(path, ctx)
        count = window_count(len(values), ctx)
    except ReadError as err:
        yield ReadError(source, err.detail, kind=err.kind)
        return
    for i in range(count):
        rows = values[i * ctx.stride:i * ctx.stride + ctx.rows]
        sample_id = content_id(ctx.salt + np.ascontiguousarray(rows, dtype=np.float64).tobytes())
        try:
            yield window_sample(rows, ctx, f"{source}#{i}", sample_id, i * ctx.stride)
        except ReadError as err:
            yield err


def is_signals_sidecar(path: str) -> bool:
    """The parameters file, and a domain file that has a signals table beside it."""
    if path.lower().endswith(PARAMS_SUFFIX):
        return True
    if extension(path) in SIGNALS_EXTENSIONS:
        return False
    stem = path[: -len(extension(path))] if extension(path) else path
    return any(os.path.exists(stem + ext) for ext in SIGNALS_EXTENSIONS)


def _register(domain: str) -> None:
    import functools
    context = functools.partial(load_context, domain=domain)
    register_reader(domain, SIGNALS_EXTENSIONS,
                    never_raises(functools.partial(read_signals, domain=domain)))
    register_records(domain, (".signals.csv", ".signals.npy"), split_table, parse_window, context)
    register_companions(domain, SIGNALS_EXTENSIONS, functools.partial(companions, domain=domain))
    register_sidecar(domain, is_signals_sidecar)


for _domain in ("graph", "mesh"):
    _register(_domain)
