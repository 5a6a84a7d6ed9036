"""`open_dataset(uri)`: a stored dataset as a sequence of dicts of numpy arrays."""
from __future__ import annotations

from storage import StoredDataset


def open_dataset(uri: str, version: int | None = None) -> StoredDataset:
    """Open a dataset folder or fsspec URI (the current version, or `version`).

    The result has `len()`, `[i]` -> `dict[str, numpy.ndarray]` keyed by the canonical names
    (shared/DESIGN.md), `.manifest` (the version's manifest as a dict) and `.errors` (the errors
    table as a pyarrow Table).
    """
    return StoredDataset(uri, version)
