"""Shared fixtures: the real local stack (moto's S3 server on 127.0.0.1, a local Ray cluster, one
Airflow home per session)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from airflow_env import airflow_home, dagbag, task_env  # noqa: F401 (fixtures: one Airflow home per session)
from pipeline.storage import object_store
from pipeline.devtools.s3server import LocalS3
from pipeline.settings import MartsSettings, RaySettings, S3Settings, Settings

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def pytest_collection_modifyitems(items):
    """The folder decides: everything under tests/e2e/ is end to end (`make test-fast` leaves it
    out by marker), and nothing else may carry the marker."""
    e2e = TESTS_DIR / "e2e"
    for item in items:
        inside = e2e in Path(item.fspath).parents
        if not inside and item.get_closest_marker("e2e"):
            raise pytest.UsageError(f"{item.nodeid}: an e2e test belongs in tests/e2e/")
        if inside:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def local_s3():
    """moto's S3 server on a free port of 127.0.0.1, for the whole session."""
    with LocalS3() as server:
        yield server


@pytest.fixture
def settings(local_s3, tmp_path) -> Settings:
    """Settings pointing at the local S3 endpoint, with fresh (created) buckets for this test."""
    unique = uuid.uuid4().hex[:10]
    s3 = S3Settings(endpoint_url=local_s3.endpoint_url, raw_bucket=f"raw-{unique}", curated_bucket=f"curated-{unique}")
    client = object_store.s3_client(s3)
    object_store.ensure_bucket(client, s3.raw_bucket)
    object_store.ensure_bucket(client, s3.curated_bucket)
    return dataclasses.replace(
        Settings(),
        s3=s3,
        ray=RaySettings(local_num_cpus=2),
        marts=MartsSettings(duckdb_path=str(tmp_path / "marts" / "callaffect.duckdb")),
    )


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster with 2 CPUs, for the whole session.

    Workers get tests/ and its test folders on their path, so functions defined in test modules
    (fake analyses) can be sent to them by reference.
    """
    import ray

    from pipeline.compute import ray_cluster

    folders = sorted({str(f.parent) for f in TESTS_DIR.rglob("test_*.py")} | {str(TESTS_DIR)})
    path = os.pathsep.join(p for p in (*folders, str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray_cluster.start_local(2, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()
