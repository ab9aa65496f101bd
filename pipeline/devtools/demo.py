"""``make demo`` (``callaffect demo``): the whole path on one machine, then a summary a user can read.

Starts a local S3 endpoint (moto), uploads synthetic support calls plus inputs that must be
quarantined, runs the nightly DAG with ``dag.test()`` (real analysis on a local Ray cluster,
Airflow on a throwaway SQLite home), prints calls, quarantines, speakers, flags and a sample
query on the DuckDB marts, then stops what it started.

Airflow reads its configuration once, when ``airflow`` is first imported: ``init_airflow`` must
run before anything imports it, and one process gets one Airflow home.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

from pipeline.devtools.local_events import aws_connection_env, create_landing_queue, receive_trigger_events
from pipeline.settings import ENV_PREFIX, Settings, load_settings

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
NIGHTLY_DAG = "callaffect_nightly"


# --- Airflow on a local SQLite home ----------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """``CALLAFFECT_<SECTION>__<FIELD>`` variables that make ``load_settings()`` return ``settings``.

    Airflow tasks read their settings themselves (in a worker, from file and environment); this is
    how a driver hands its Settings to them without sending them through XCom.
    """
    env = {}
    defaults = Settings().to_dict()
    for section, values in settings.to_dict().items():
        for name, value in values.items():
            if value != defaults[section][name]:
                env[f"{ENV_PREFIX}{section.upper()}__{name.upper()}"] = "none" if value is None else str(value)
    return env


def airflow_env(home: Path, dags_folder: Path = DAGS_FOLDER) -> dict[str, str]:
    """A standalone Airflow: config, SQLite metadata DB and logs under ``home``, our DAGs only."""
    home = Path(home).resolve()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }


def init_airflow(home: Path, dags_folder: Path = DAGS_FOLDER) -> None:
    """Point this process's Airflow at ``home`` and create its metadata DB (about 1 s).

    Raises if Airflow was already imported with another home: its ORM would still use the old DB.
    """
    env = airflow_env(home, dags_folder)
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]:
        raise RuntimeError(
            f"airflow was imported before init_airflow({home}): its configuration is fixed at import"
        )
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    from airflow.utils import db

    db.initdb()


def run_dag(dag_id: str, dags_folder: Path = DAGS_FOLDER, conf: dict | None = None):
    """Parse the DAG from the DAGs folder (as the scheduler would) and run it once with ``dag.test()``
    (``conf``: the run's parameters, as ``airflow dags trigger --conf``).

    Returns the finished DagRun.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]
    return dag.test(run_conf=conf)


def task_result(dag_run, task_id: str):
    """The return value (XCom) of an unmapped task of a finished run, or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(
        run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value", map_indexes=-1, limit=1
    )
    with create_session() as session:
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


# --- the demo --------------------------------------------------------------------------------


def _show_pipeline_progress() -> None:
    """Print the pipeline's INFO lines (batch progress, gate, marts) plainly, whatever Airflow's level."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    logger = logging.getLogger("pipeline")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _upload_demo_inputs(settings: Settings, workdir: Path, n_calls: int, seed: int) -> tuple[list[str], list[str]]:
    """Generate the demo calls and the bad inputs; upload them as today's recordings.

    Returns the call ids of the good calls and of the bad inputs.
    """
    from pipeline.storage import object_store
    from pipeline.devtools.synth.bad_inputs import write_bad_inputs
    from pipeline.devtools.synth.call_sets import generate_demo_set
    from pipeline.devtools.synth_video import generate_video_call

    calls = generate_demo_set(workdir / "calls", n_calls=n_calls, seed=seed, truth_dir=workdir / "truth")
    # A video call too: agent and customer on camera, plus a muted observer who never speaks.
    video = generate_video_call(workdir / "calls", f"video-{seed:03d}", seed=seed + 1, n_tiles=3, silent_tiles=1,
                                truth_dir=workdir / "truth")
    bad = write_bad_inputs(workdir / "bad")
    client = object_store.s3_client(settings.s3)
    prefix = f"{settings.s3.raw_prefix}{date.today().isoformat()}/"
    uploads = [*(c.audio_path for c in calls), *(c.metadata_path for c in calls), video.video_path,
               video.metadata_path, *bad.values()]
    for path in uploads:
        object_store.upload_file(client, path, settings.s3.raw_bucket, prefix + path.name)
    for call in calls:
        print(f"  {call.call_id}: {call.duration_s:.0f} s, {call.n_speakers} speakers, {call.scenario}"
              f"{', frustrated customer' if call.frustrated_span else ''}")
    print(f"  {video.call_id}: {video.duration_s:.0f} s video call, {len(video.speakers)} speakers, "
          f"{len(video.tiles)} people on screen (one never speaks), consent to video analysis given")
    print(f"  bad inputs: {', '.join(sorted(bad))}")
    return [*(c.call_id for c in calls), video.call_id], [Path(name).stem for name in bad]


def run_landing_from_queue(settings: Settings) -> dict:
    """Receive the landing queue's notifications with the landing DAG's own watcher trigger, then
    run the landing DAG with them (what the asset event would start). The register task's result,
    or its skip reason."""
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.jobs.landing import trigger_messages

    landing = DagBag(dag_folder=str(DAGS_FOLDER)).dags["callaffect_landing"]
    (queue_asset,) = landing.timetable.asset_condition.objects
    payloads = receive_trigger_events(queue_asset.watchers[0].trigger, idle_s=3)
    messages = trigger_messages(payloads)
    run = run_dag("callaffect_landing", conf={"messages": messages})
    return {"messages": len(messages), "state": run.get_task_instance("register").state,
            "registered": task_result(run, "register")}


def print_landing(landing: dict) -> None:
    registered = landing["registered"] or {"count": 0, "call_ids": []}
    print(f"  {landing['messages']} queue message(s); register {landing['state']}: "
          f"{registered['count']} recording(s) announced ({', '.join(registered['call_ids'])}). Recordings still "
          "waiting for their metadata sidecar, and anything whose event was lost, are found by the nightly listing.")


def print_report(report: dict, marts_path: str) -> None:
    """The nightly report, for people: calls, quarantines, speakers, flags, the marts file."""
    from pipeline.jobs.marts import format_query, sample_queries

    calls = report["calls"]
    print(f"\nCalls processed: {len(report['processed'])} loaded into the marts, "
          f"{len(report['quarantined'])} quarantined (of {len(calls)} in this run)")
    for call in calls:
        if not call["loaded"]:
            continue
        speakers = ", ".join(f"{s['speaker']} ({s['role']}, {s['talk_s']:.0f} s)" for s in call["speakers"])
        print(f"  {call['call_id']}: {call['duration_s']:.0f} s, {call['num_speakers']} speakers: {speakers}")
        for face in call.get("faces", []):
            linked = (f"{face['speaker']} ({face['role']}), link confidence {face['link_confidence']:.2f}"
                      if face["speaker"] else "not linked to any speaker")
            print(f"      face track {face['track_id']} ({face['on_screen_s']:.0f} s on screen): {linked}")
    if report["quarantined"]:
        print("\nQuarantined (not loaded), with the reason:")
        for call_id, reason in sorted(report["quarantined"].items()):
            print(f"  {call_id}: {reason}")
    shown = "" if len(report["flags"]) == report["flag_count"] else f" (the strongest {len(report['flags'])} shown)"
    print(f"\nFrustration flags: {report['flag_count']}{shown}")
    for f in report["flags"]:
        print(f"  {f['call_id']}  {f['speaker']} ({f['role']})  {f['start_s']:7.1f}-{f['end_s']:7.1f} s"
              f"  score {f['score']:.2f}  confidence {f['confidence']:.2f}")
    print(f"\nDuckDB marts: {marts_path}")
    query = sample_queries()["top_flags"]
    print(f"Sample query (duckdb {marts_path} -readonly):\n{query};\n")
    print(format_query(marts_path, query))


def print_governance(settings: Settings, marts_path: str) -> None:
    """What the inference policy allowed and withheld in this run, and the audit's completeness."""
    import duckdb

    from pipeline.jobs.governance import governance_report

    with duckdb.connect(marts_path, read_only=True) as con:
        first, last = con.execute("select min(call_date), max(call_date) from dim_calls").fetchone()
    if first is None:
        return
    report = governance_report(settings, first, last, marts_path=marts_path)
    made: dict[str, int] = {}
    withheld: dict[str, int] = {}
    for row in report.inferences:
        counts = made if row["performed"] else withheld
        counts[row["role"]] = counts.get(row["role"], 0) + row["decisions"]
    show = lambda counts: ", ".join(f"{role} {n}" for role, n in sorted(counts.items())) or "none"  # noqa: E731
    print(f"\nEmotion inferences (callaffect governance report): made: {show(made)}; withheld: {show(withheld)}")
    completeness = report.audit_completeness
    print(f"Audit completeness: {report.affect_values_audited} of {report.affect_values} affect values have the audit "
          f"row of their inference" + (f" ({completeness:.1%})" if completeness is not None else ""))


def keep_for_review(settings: Settings, workdir: Path) -> Path:
    """Copy the curated bucket to ``workdir/curated`` (the S3 endpoint dies with the demo), add demo
    accounts there, and print the command that serves the review app on it."""
    import secrets
    import shutil

    from pipeline.storage.curated import CuratedStore
    from pipeline.storage.reviews import ReviewStore

    root = workdir / "curated"
    shutil.rmtree(root, ignore_errors=True)
    bucket, local = CuratedStore(settings), CuratedStore(settings, root)
    for key in bucket.list():
        local.write_bytes(key, bucket.read_bytes(key))
    store = ReviewStore(settings, root=str(root))
    logins = {}
    for username, role in (("demo-reviewer", "reviewer"), ("demo-lead", "lead")):
        logins[username] = secrets.token_urlsafe(9)
        store.add_account(username, role, logins[username])
    _step("Review the flags in a browser")
    print(f"  .venv/bin/callaffect serve --marts {settings.marts.duckdb_path} --curated-root {root} --insecure-cookies")
    print("  then open http://127.0.0.1:8080 and sign in (user / password):")
    for username, password in logins.items():
        print(f"    {username} / {password}")
    return root


def run_demo(workdir: Path = Path("data/demo"), n_calls: int = 3, seed: int = 0) -> int:
    """The body of ``callaffect demo`` (``make demo``). Returns the exit code: 0 when the nightly run succeeded, every
    uploaded recording was committed in it and every good call was loaded into the marts."""
    import shutil

    workdir = Path(workdir).resolve()
    started = time.monotonic()
    # Airflow and S3 state of an earlier demo is meaningless (the S3 endpoint kept it in memory).
    shutil.rmtree(workdir / "airflow", ignore_errors=True)
    # Airflow's own INFO lines drown the story; the pipeline's progress is printed on its own.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    _step(f"Airflow: standalone home with a SQLite metadata DB in {workdir / 'airflow'}")
    init_airflow(workdir / "airflow")
    _show_pipeline_progress()

    from pipeline.storage import object_store
    from pipeline.devtools.s3server import LocalS3

    s3_server = LocalS3()
    try:
        _step("Local S3 endpoint (moto's server on 127.0.0.1)")
        s3_server.start()
        base = load_settings()
        settings = dataclasses.replace(
            base,
            s3=dataclasses.replace(base.s3, endpoint_url=s3_server.endpoint_url),
            marts=dataclasses.replace(base.marts, duckdb_path=str(workdir / "marts" / "callaffect.duckdb")),
        )
        client = object_store.s3_client(settings.s3)
        for bucket in (settings.s3.raw_bucket, settings.s3.curated_bucket):
            object_store.ensure_bucket(client, bucket)
        # The raw bucket notifies a landing queue of each new object, as infra/terraform declares.
        queue_url = create_landing_queue(settings)
        settings = dataclasses.replace(settings, events=dataclasses.replace(settings.events, queue_url=queue_url, receive_wait_s=1))
        # The DAG's tasks read their settings (and the AWS connection) from this process's environment.
        os.environ.update(settings_env(settings) | aws_connection_env(settings))
        print(f"  {s3_server.endpoint_url}: s3://{settings.s3.raw_bucket}, s3://{settings.s3.curated_bucket}, SQS {queue_url}")

        _step(f"Generating {n_calls} synthetic support call(s), a video call and bad inputs, uploading to s3://{settings.s3.raw_bucket}")
        good, bad = _upload_demo_inputs(settings, workdir, n_calls, seed)

        _step("Landing: S3 notifications -> SQS -> the landing DAG's queue trigger (run here as the triggerer would) -> register")
        print_landing(run_landing_from_queue(settings))

        _step(f"Running the nightly DAG with dag.test(): {len(good) + len(bad)} recordings analysed on a local Ray cluster")
        dag_run = run_dag(NIGHTLY_DAG)
        report = task_result(dag_run, "report")
        if dag_run.state != "success" or report is None:
            print(f"\nThe nightly run ended {dag_run.state}: see the task logs above.", file=sys.stderr)
            return 1
        _step("Result")
        print_report(report, report["marts"]["path"])
        print_governance(settings, report["marts"]["path"])
        missing = sorted(set(good) - set(report["processed"]))
        unaccounted = sorted((set(good) | set(bad)) - {c["call_id"] for c in report["calls"]})
        if missing or unaccounted:
            print(f"\nNot as expected: good calls not loaded {missing}, recordings missing from the run {unaccounted}",
                  file=sys.stderr)
            return 1
        keep_for_review(settings, workdir)
        print(f"\nDone in {time.monotonic() - started:.0f} s.")
        return 0
    finally:
        _step("Stopping what the demo started (Ray, the S3 endpoint)")
        import ray

        if ray.is_initialized():
            ray.shutdown()
        s3_server.stop()
