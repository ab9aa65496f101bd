"""Airflow for tests: one throwaway home with a SQLite metadata DB per test session.

Airflow fixes its configuration when it is first imported, so the home is set up once, before
any test imports ``airflow``; test modules import Airflow inside tests, never at the top.
Creating the DB in-process (``airflow.utils.db.initdb``) takes about 1 s; ``airflow db migrate``
in a subprocess about 3 s. ``dag.test()`` then runs every task in the test process, which is why
a test can hand a task its settings through the environment and swap the analysis function.
"""

from __future__ import annotations

import os

import pytest

from pipeline.devtools.demo import DAGS_FOLDER, init_airflow, settings_env
from pipeline.devtools.local_events import aws_connection_env
from pipeline.settings import ENV_PREFIX, Settings, load_settings


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    init_airflow(home)
    return home


def use_settings(monkeypatch, settings: Settings) -> Settings:
    """Make the tasks' ``load_settings()`` return ``settings`` (S3 endpoint, buckets, paths)."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in (settings_env(settings) | aws_connection_env(settings)).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == settings
    return settings


@pytest.fixture
def task_env(settings, monkeypatch) -> Settings:
    return use_settings(monkeypatch, settings)


@pytest.fixture(scope="session")
def dagbag(airflow_home):
    """Every DAG in dags/, parsed as the scheduler's DAG processor would."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))
