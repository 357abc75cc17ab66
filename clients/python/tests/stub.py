"""A small HTTP server on loopback that sits between the client and the real service.

It records every request (method, path, headers, body with chunked transfer coding removed) and
answers from a script of canned responses when one matches, else forwards the request to the
service and relays its answer. A canned response may also drop the connection without answering.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class Recorded:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    at: float
    status: int = 0
    canned: bool = False


@dataclass
class Canned:
    """Answer (``status``, ``headers``, ``body``) to requests that ``match``, ``times`` times
    (None: always). ``drop``: close the connection without an answer."""

    match: Callable[[str, str], bool]
    status: int = 503
    headers: Dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: Optional[int] = 1
    drop: bool = False


class Stub:
    def __init__(self, upstream: Optional[str]) -> None:
        self.upstream = urlsplit(upstream) if upstream else None
        self.requests: List[Recorded] = []
        self.script: List[Canned] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with stub._lock:
                    stub.requests.append(rec)
                    canned = stub._take(self.command, self.path)
                if canned is not None:
                    rec.canned = True
                    if canned.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    payload = canned.body
                    if payload is None:
                        payload = b""
                    elif not isinstance(payload, bytes):
                        payload = json.dumps(payload).encode()
                    rec.status = canned.status
                    self.send_response(canned.status)
                    hdrs = {"Content-Type": "application/json", **canned.headers}
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                assert stub.upstream is not None, "no canned answer and no upstream"
                conn = http.client.HTTPConnection(stub.upstream.hostname, stub.upstream.port, timeout=120)
                try:
                    fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    conn.request(self.command, self.path, body=body if body or self.command in ("POST", "PUT") else None, headers=fwd)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                rec.status = resp.status
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, method: str, path: str) -> Optional[Canned]:
        for c in self.script:
            if c.match(method, path) and (c.times is None or c.times > 0):
                if c.times is not None:
                    c.times -= 1
                return c
        return None

    def add(self, canned: Canned) -> "Stub":
        with self._lock:
            self.script.append(canned)
        return self

    def matching(self, method: str, prefix: str) -> List[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def on(method: str, prefix: str) -> Callable[[str, str], bool]:
    return lambda m, p: m == method and p.startswith(prefix)


def problem(status: int, title: str, detail: str) -> Dict[str, Any]:
    return {"type": "https://infoaudit.dev/problems/test", "title": title, "status": status, "detail": detail}

