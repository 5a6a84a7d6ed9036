"""Where bytes live: Parquet shards, manifest, errors table, atomic commits, locks, fsspec URIs.

Knows nothing of geometry: it stores named numpy arrays per sample (storage/arrays.py has the
column layout, storage/manifest.py the folder structure, storage/writer.py the shards).
"""
from storage.arrays import ColumnInfo, decode_column, infer_infos, rows_to_table  # noqa: F401
from storage.lock import DatasetLock, DatasetLocked  # noqa: F401
from storage.manifest import CorruptManifest, list_versions, load_manifest  # noqa: F401
from storage.ownership import OwnershipError, claim_output  # noqa: F401
from storage.reader import StoredDataset  # noqa: F401
from storage.retention import prune_versions  # noqa: F401
from storage.writer import (commit_version, read_shard_entry, read_shard_files, shard_done,  # noqa: F401
                            write_shard)
