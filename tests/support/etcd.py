# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop real etcd processes on free loopback ports, for tests.

Two uses:

    with EtcdServer(tmp_path) as etcd:          # a one-node etcd to act as discovery service
        etcd.client_url                          # http://127.0.0.1:<free port>

    with start_members(url, ["m0", "m1", "m2"], tmp_path, timeout=20) as members:
        members.member_list()                    # the cluster they formed, as etcd reports it

Every wait is bounded: etcd members whose discovery URL is unreachable retry forever, so a test that
waited on them without a deadline would hang CI instead of failing. Processes are killed on exit from
the `with` block whatever happened inside it; their logs stay in the tmp dir and the tail is put into
error messages, because "did not become healthy" alone is useless when debugging a CI run.

Only loopback addresses and ports the kernel hands out are used, never 2379/2380/4001.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

ETCD_BINARY = shutil.which("etcd") or "/usr/bin/etcd"
HOST = "127.0.0.1"


class EtcdProcessError(RuntimeError):
    """An etcd process did not start, or a cluster did not form, in time."""


def etcd_available() -> bool:
    """True when an etcd binary is installed (tests skip otherwise)."""
    return os.access(ETCD_BINARY, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it; there is a small window before etcd binds it, which is fine for tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    # etcd reads ETCD_* variables as flags; a stray ETCD_DISCOVERY in the environment would change
    # what the test starts. Proxies must not see loopback traffic either.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ETCD_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 3.0) -> tuple[int, dict]:
    """A small HTTP call returning (status, parsed JSON); HTTP errors are returned, not raised.

    Tests use it to read etcd's state independently of the code under test.
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"_raw": raw.decode("utf-8", "replace")}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdProcess:
    """One etcd process with its own data dir, ports and log file.

    `args` are extra flags; the listen/advertise URLs, name and data dir are set here.
    """

    def __init__(self, tmpdir: str | os.PathLike, name: str, args: Sequence[str] = (), enable_v2: bool = True,
                 client_port: int | None = None) -> None:
        self.name = name
        self.base = Path(tmpdir) / name
        self.data_dir = self.base / "data"
        self.log_path = self.base / "etcd.log"
        self.client_port_given = client_port is not None
        self.client_port = client_port or free_port()
        self.peer_port = free_port()
        self.client_url = f"http://{HOST}:{self.client_port}"
        self.peer_url = f"http://{HOST}:{self.peer_port}"
        self.enable_v2 = enable_v2
        self.extra_args = list(args)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
        ]
        if self.enable_v2:
            cmd.append("--enable-v2")
        return cmd + self.extra_args

    def start(self) -> "EtcdProcess":
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            # A new session so that stop() can signal etcd alone, never the test runner's group.
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_clean_env(), start_new_session=True,
            )
        finally:
            log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this etcd (TERM, then KILL after `timeout`); safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        try:
            status, body = http_json("GET", self.client_url + "/health", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.get("health") in ("true", True)

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not self.running():
                raise EtcdProcessError(f"etcd {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise EtcdProcessError(f"etcd {self.name} not healthy after {timeout} s:\n{self.log_tail()}")

    def member_list(self) -> list[dict]:
        """The members etcd reports, through the v3 gateway (served with or without --enable-v2)."""
        status, body = http_json("POST", self.client_url + "/v3/cluster/member/list", {})
        if status != 200:
            raise EtcdProcessError(f"member list from {self.name}: HTTP {status} {body}")
        return body.get("members", [])

    # Readers for asserting on etcd's state in tests.
    def v2_get(self, key: str) -> tuple[int, dict]:
        return http_json("GET", f"{self.client_url}/v2/keys/{key.lstrip('/')}")

    def v3_get(self, key: str) -> str | None:
        status, body = http_json("POST", self.client_url + "/v3/kv/range", {"key": b64(key)})
        if status != 200:
            raise EtcdProcessError(f"range {key}: HTTP {status} {body}")
        kvs = body.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def v3_count_prefix(self, prefix: str) -> int:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        status, body = http_json(
            "POST", self.client_url + "/v3/kv/range",
            {"key": b64(prefix), "range_end": b64(end), "count_only": True},
        )
        if status != 200:
            raise EtcdProcessError(f"range {prefix}: HTTP {status} {body}")
        return int(body.get("count", 0))

    def __enter__(self) -> "EtcdProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EtcdServer(EtcdProcess):
    """A one-member etcd, started and healthy on entry, stopped on exit.

    `enable_v2=True` serves the v2 keys API (what v2 discovery members talk to); the v3 JSON gateway
    (`/v3/kv/...`) is served in both cases.
    """

    def __init__(self, tmpdir: str | os.PathLike, enable_v2: bool = True, name: str = "discovery", start_timeout: float = 15.0,
                 client_port: int | None = None) -> None:
        super().__init__(tmpdir, name, enable_v2=enable_v2, client_port=client_port)
        self.start_timeout = start_timeout
        self.extra_args = [
            "--initial-cluster", f"{name}={self.peer_url}",
            "--initial-cluster-state", "new",
        ]

    def __enter__(self) -> "EtcdServer":
        return self.start_healthy()

    def start_healthy(self, attempts: int = 5) -> "EtcdServer":
        """Start and wait until healthy. free_port() only finds a port that was free a moment ago: when another
        process took one first (etcd: "address already in use"), start again on new ports, unless the client
        port was given."""
        fixed_client = self.client_port_given
        for attempt in range(attempts):
            self.start()
            try:
                self.wait_healthy(self.start_timeout)
                return self
            except EtcdProcessError:
                self.stop()
                if "address already in use" not in self.log_tail() or attempt == attempts - 1:
                    raise
            except BaseException:
                self.stop()
                raise
            if not fixed_client:
                self.client_port = free_port()
            self.peer_port = free_port()
            self.client_url = f"http://{HOST}:{self.client_port}"
            self.peer_url = f"http://{HOST}:{self.peer_port}"
            self.extra_args = ["--initial-cluster", f"{self.name}={self.peer_url}", "--initial-cluster-state", "new"]
            self.log_path.unlink(missing_ok=True)
        return self


class Members(list):
    """The etcd members start_members() started; a context manager that stops them all on exit."""

    def stop_all(self) -> None:
        for member in self:
            member.stop()

    def member_list(self) -> list[dict]:
        """The member list as reported by the first member that answers."""
        last: Exception | None = None
        for member in self:
            try:
                return member.member_list()
            except (OSError, EtcdProcessError) as exc:
                last = exc
        raise EtcdProcessError(f"no member answered: {last}")

    def wait_formed(self, expected: int, timeout: float) -> list[dict]:
        """Wait until every member is healthy and reports `expected` started members."""
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while time.monotonic() < deadline:
            for member in self:
                if not member.running():
                    raise EtcdProcessError(
                        f"etcd {member.name} exited with {member.proc.returncode}:\n{member.log_tail()}"
                    )
            if all(member.healthy() for member in self):
                try:
                    seen = self.member_list()
                except EtcdProcessError:
                    seen = []
                # A member is started once it has a name; before that it was only added.
                if len([m for m in seen if m.get("name")]) == expected:
                    return seen
            time.sleep(0.2)
        logs = "\n".join(f"--- {m.name}:\n{m.log_tail(10)}" for m in self)
        raise EtcdProcessError(f"cluster of {expected} did not form in {timeout} s (saw {seen}):\n{logs}")

    def __enter__(self) -> "Members":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def start_members(
    discovery_url: str | None,
    names: Iterable[str],
    tmpdir: str | os.PathLike,
    timeout: float = 20.0,
    *,
    wait: bool = True,
    discovery_args: Sequence[str] | None = None,
    enable_v2: bool = True,
) -> Members:
    """Start one etcd member per name that bootstraps through `discovery_url` (v2 discovery).

    `--discovery-fallback exit` makes a member that finds the cluster full exit instead of becoming a
    proxy, so a wrong size shows up as an exit rather than a silent proxy. `discovery_args` replaces
    the `--discovery` flags (e.g. for v3 discovery flags of a newer etcd).
    With `wait`, returns once the members formed a cluster of len(names), or stops them all and raises
    EtcdProcessError with their log tails after `timeout` seconds.
    """
    if discovery_args is None:
        discovery_args = ["--discovery", discovery_url, "--discovery-fallback", "exit"]
    members = Members(
        EtcdProcess(tmpdir, name, args=discovery_args, enable_v2=enable_v2) for name in names
    )
    try:
        for member in members:
            member.start()
        if wait:
            members.wait_formed(len(members), timeout)
    except BaseException:
        members.stop_all()
        raise
    return members
