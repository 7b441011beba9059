"""A counting, fault-injecting HTTP proxy in front of the EC2 API emulator, for tests and the benchmark.

It forwards every request unchanged and counts EC2 API calls by their Action. Rules make it answer some
calls with an AWS error instead, the way real AWS does (throttling, a permission missing half way), so tests
can prove retries and roll-backs against behaviour the emulator itself never shows.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)


@dataclass
class Fault:
    """Answer `action` with an error `times` times, once `after` (another action) has been seen."""

    action: str
    code: str
    status: int = 400
    message: str = "injected by the test proxy"
    times: int = 1
    after: str | None = None
    hits: int = 0


@dataclass
class _State:
    target: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)
    sequence: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Seconds to hold each call of an action before forwarding it (AWS can take seconds to answer RunInstances).
    delays: dict = field(default_factory=dict)
    # Once this action has been answered, every later call gets no answer at all, as if the endpoint died.
    dead_after: str | None = None
    dead: bool = False


class EC2Proxy:
    def __init__(self, target_url: str, port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(target_url)
        self.state = _State(target=(parsed.hostname or "127.0.0.1", parsed.port or 80))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "EC2Proxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_fault(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def delay(self, action: str, seconds: float) -> None:
        with self.state.lock:
            self.state.delays[action] = seconds

    def die_after(self, action: str) -> None:
        with self.state.lock:
            self.state.dead_after = action

    def revive(self) -> None:
        with self.state.lock:
            self.state.dead_after, self.state.dead = None, False

    def counts(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.counts)

    def sequence(self) -> list[str]:
        with self.state.lock:
            return list(self.state.sequence)

    def reset_counts(self) -> None:
        with self.state.lock:
            self.state.counts.clear()
            self.state.sequence.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._forward(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._forward(self.rfile.read(length))

    def _forward(self, body: bytes) -> None:
        action = ""
        if body:
            action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        fault = None
        with self.state.lock:
            dead, delay = self.state.dead, self.state.delays.get(action, 0)
        if dead:
            self.close_connection = True  # no answer: the client sees the connection closed
            return
        with self.state.lock:
            if action:
                self.state.counts[action] += 1
                self.state.sequence.append(action)
                for f in self.state.faults:
                    armed = f.after is None or self.state.counts.get(f.after, 0) > 0
                    if f.action == action and armed and f.hits < f.times:
                        f.hits += 1
                        fault = f
                        break
        if delay:
            time.sleep(delay)  # counted on arrival, answered late
        if fault is not None:
            payload = _ERROR_BODY.format(code=fault.code, message=fault.message).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.state.target, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        conn.close()
        with self.state.lock:
            if action and action == self.state.dead_after:
                self.state.dead = True
