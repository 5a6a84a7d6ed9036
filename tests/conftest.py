"""Session-wide test settings: Prefect's home in a temporary folder, no analytics, one Dask cluster."""
import os
import tempfile

# Before anything imports prefect: its home (SQLite database, logs) stays inside the test run.
_PREFECT_HOME = tempfile.mkdtemp(prefix="gdl-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.pop("PREFECT_API_URL", None)
# `gdl` commands the tests start run in their own process, never in a warm server a developer
# left running (flows/warm.py): tests/test_warm.py starts its own, in its own folder.
os.environ["GDL_WARM_DIR"] = tempfile.mkdtemp(prefix="gdl-test-warm-")

import logging  # noqa: E402

import pytest  # noqa: E402

# Prefect stops its temporary server at interpreter exit, after pytest closed the captured
# streams; its last log line would otherwise print a "--- Logging error ---" traceback.
logging.raiseExceptions = False


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster (two worker processes), shared by the tests that compute on Dask."""
    from pipelines.cluster import dask_client as make_client
    with make_client(n_workers=2) as client:
        yield client
