"""A fault-injecting HTTP proxy in front of the local S3 endpoint, on 127.0.0.1.

Clients (boto3, DuckDB's httpfs, Ray workers) are pointed at the proxy as their S3 endpoint.
Each request, with the configured probabilities, is answered ``503 SlowDown`` (or another
status) without reaching S3, has its connection dropped before it is forwarded, or is forwarded
and then has its connection dropped before the answer (the request took effect; the client
does not know). Everything else is forwarded as it is. Faults are drawn from a seeded
generator, and counted.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
_ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


class FaultProxy:
    def __init__(self, upstream: str, *, error_rate: float = 0.0, drop_rate: float = 0.0,
                 drop_after_rate: float = 0.0, status: int = 503, seed: int = 0):
        self.upstream = urlparse(upstream)
        self.error_rate, self.drop_rate, self.drop_after_rate = error_rate, drop_rate, drop_after_rate
        self.status = status
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _draw(self) -> str:
        with self._lock:
            x = self._rng.random()
            fault = (
                "error" if x < self.error_rate
                else "drop" if x < self.error_rate + self.drop_rate
                else "drop_after" if x < self.error_rate + self.drop_rate + self.drop_after_rate
                else "forward"
            )
            self.counts[fault] += 1
            return fault

    def __enter__(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._draw()
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "error":
                    code, message = _ERRORS.get(proxy.status, ("ServiceUnavailable", "Try again."))
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                               f"<Message>{message}</Message></Error>").encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                if fault == "drop_after":  # S3 did it; the client never hears so
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
