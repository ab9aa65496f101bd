"""A local S3 endpoint: moto's standalone server on 127.0.0.1.

``LocalS3`` runs it in a thread of this process (tests). ``serve_forever`` (the body of
``callaffect s3 serve``) and ``LocalS3Process`` (that command as a child process) run it as its
own long-lived process, so that other processes (Airflow task runners, Ray workers, the demo)
share one endpoint. State lives in memory: it is gone when the server stops.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import subprocess
import sys
import threading

from moto.server import ThreadedMotoServer


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    # moto's server thread dies silently on a taken port and start() then waits forever.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot serve S3 on {host}:{port}: {exc.strerror}") from None


class LocalS3:
    """moto's server in a background thread; port 0 (the default) picks a free one."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self._host, self._port = host, port
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._address: tuple[str, int] | None = None

    def start(self) -> "LocalS3":
        if self._port:
            _check_port_free(self._host, self._port)
        # One access-log line per request drowns everything else out.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        self._address = self._server.get_host_and_port()
        return self

    def stop(self) -> None:
        if self._address is not None:
            self._server.stop()
            self._address = None

    @property
    def endpoint_url(self) -> str:
        if self._address is None:
            raise RuntimeError("LocalS3 is not running")
        host, port = self._address
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(port: int = 5000, host: str = "127.0.0.1") -> None:
    """Serve until SIGINT or SIGTERM (``callaffect s3 serve``)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalS3(port, host) as s3:
        print(f"local S3 endpoint at {s3.endpoint_url} (Ctrl-C stops it)", flush=True)
        stop.wait()


class LocalS3Process:
    """The server as a child process (``callaffect s3 serve``), stopped on exit."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "LocalS3Process":
        cmd = [sys.executable, "-m", "pipeline.cli", "s3", "serve", "--port", str(self.port), "--host", self.host]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        # serve_forever prints one line once it listens; EOF means it exited (e.g. port taken).
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
        line = self._proc.stdout.readline() if ready else ""
        if "endpoint at" not in line:
            self.stop()
            raise RuntimeError(f"local S3 server did not start on {self.endpoint_url}")
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> "LocalS3Process":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
