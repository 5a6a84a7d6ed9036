"""gdl-data's geometry layer: domain types, readers, geometric operators, torch loading, models.

Knows nothing of Prefect or Dask; everything here runs in a notebook without a server.
"""
from gdl_data.dataset import open_dataset  # noqa: F401

__version__ = "0.1.0"
