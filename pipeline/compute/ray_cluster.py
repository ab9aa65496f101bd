"""Join the configured Ray cluster, or start a private local one that dies with this process.

A local cluster listens on 127.0.0.1 only, and a small reaper process (``python -m
pipeline.compute.ray_cluster``) kills what Ray leaves behind when this process dies without shutting it
down (SIGKILL, or SIGTERM from Airflow): Ray's dashboard and runtime-env agents survive their
raylet, reparented and ignoring SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pipeline.settings import RaySettings

# Ray binds its gRPC servers to every interface and turns 127.0.0.1 given as the node address
# back into the host's address; only with its "no cluster" switch (meant for laptops) does the
# node address stay the loopback, and every server bind to it.
_LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ensure(ray_settings: RaySettings) -> None:
    import ray

    if ray.is_initialized():
        return
    if ray_settings.address is not None:
        ray.init(address=ray_settings.address)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()  # the operator pointed this process at a cluster
    else:
        start_local(ray_settings.local_num_cpus)


def start_local(num_cpus: int | None = None, **init_kwargs) -> None:
    """A local cluster on 127.0.0.1, reaped when this process dies."""
    import ray

    os.environ.update(_LOOPBACK_ONLY)  # read by ray.init below and inherited by its processes
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **init_kwargs)
    start_reaper()


def _descendants(pid: int) -> list[tuple[int, float]]:
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            found.append((child.pid, child.create_time()))
        except psutil.NoSuchProcess:
            continue
    return found


def start_reaper() -> subprocess.Popen:
    """Watch this process; when it is gone, kill the Ray processes it started."""
    import psutil

    # The processes started so far go along on the command line: a batch killed before the reaper
    # has even started its loop still has them reaped. The reaper re-reads the tree every half
    # second while we live, so workers started later count too.
    me = psutil.Process()
    known = [f"{pid}:{started!r}" for pid, started in _descendants(me.pid)]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.compute.ray_cluster", str(me.pid), repr(me.create_time()), *known],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to our process group must not take the reaper first
    )


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        return psutil.Process(pid).create_time() == started  # not a recycled pid
    except psutil.NoSuchProcess:
        return False


def _reap(parent: int, parent_started: float, known: dict[int, float], poll_s: float = 0.5) -> None:
    import psutil

    own = os.getpid()
    while _alive(parent, parent_started):
        current = dict(_descendants(parent))
        current.pop(own, None)
        if known and not current:
            return  # ray.shutdown() took its processes down: nothing to reap
        known.update(current)
        time.sleep(poll_s)
    # Children of the processes we know (workers, agents) first, then the processes themselves.
    for pid, started in list(known.items()):
        known.update(_descendants(pid))
    for pid, started in known.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started:  # not a recycled pid
                proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue


if __name__ == "__main__":
    _parent, _started, *_known = sys.argv[1:]
    _reap(int(_parent), float(_started), {int(p): float(t) for p, t in (item.split(":") for item in _known)})
