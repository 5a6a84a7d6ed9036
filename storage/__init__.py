"""Where bytes live: Parquet shards, manifest, errors table, atomic commits, fsspec URIs.

Knows nothing of geometry: it stores named numpy arrays per sample (see storage/arrays.py for
the layout, storage/manifest.py for the folder structure).
"""
from storage.arrays import ColumnInfo, decode_column, infer_infos, rows_to_table  # noqa: F401
from storage.manifest import list_versions, load_manifest  # noqa: F401
from storage.reader import StoredDataset  # noqa: F401
from storage.writer import commit_version, write_shard  # noqa: F401
