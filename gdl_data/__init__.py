"""gdl-data's geometry layer: domain types, readers, geometric operators, torch loading, models.

Knows nothing of Prefect or Dask; everything here runs in a notebook without a server.
"""
from typing import Any


def __getattr__(name: str) -> Any:
    # `open_dataset` loads storage (pyarrow.dataset, pandas: ~1 s); importing gdl_data for a
    # spec check (`gdl validate`) must not pay for it, so it is imported on first use.
    if name == "open_dataset":
        from gdl_data.dataset import open_dataset
        return open_dataset
    raise AttributeError(f"module 'gdl_data' has no attribute {name!r}")

__version__ = "0.1.0"
