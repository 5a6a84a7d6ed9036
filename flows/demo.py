"""`gdl demo`: every domain through the whole path on one temporary Dask cluster."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger

from flows.preprocess import preprocess_flow
from flows.train import train_flow
from pipelines.cluster import dask_client
from pipelines.demo import prepare_demo


@flow(name="gdl-demo")
def demo_flow(workdir: str) -> dict:
    logger = get_run_logger()
    start = time.perf_counter()
    spec_paths, train_spec = prepare_demo(workdir)
    logger.info("demo data and specs ready under %s", workdir)
    datasets = []
    with dask_client() as client:  # one cluster for all four runs: workers start once
        address = client.scheduler.address
        for path in spec_paths:
            datasets.append(preprocess_flow(path, dask_address=address))
    training = train_flow(train_spec)  # a short run: the cached geometry feeding a model
    return {"workdir": workdir, "datasets": datasets, "training": training,
            "wall_seconds": time.perf_counter() - start}
