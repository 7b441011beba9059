# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node image's fleetd stand-in: its configuration, and its registration in a real etcd (Debian's 3.4)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Callable

import pytest
from support.etcd import EtcdServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FLEETD = os.path.join(ROOT, "roles", "sandbox", "files", "node-image", "opt", "bin", "fleetd.py")
FLEETCTL_DOUBLE = os.path.join(ROOT, "roles", "sandbox", "files", "node-image", "opt", "bin", "fleetctl.py")
ETCD = "/usr/bin/etcd"
PREFIX = "/_coreos.com/fleet/"

# The file is installed as /opt/bin/fleetd, not imported by anything: load it by path.
_spec = importlib.util.spec_from_file_location("sandbox_fleetd", FLEETD)
fleetd = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fleetd  # dataclasses look their module up there
_spec.loader.exec_module(fleetd)

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback etcd, never a proxy


def wait_for(what: str, check: Callable[[], object], timeout: float, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Etcd(EtcdServer):
    """One etcd member with the v2 API on loopback (tests/support), with what these tests read of it."""

    def __init__(self, data_dir: str, client_port: int | None = None):
        super().__init__(data_dir, name="test", start_timeout=20, client_port=client_port)
        self.url = self.client_url

    def start(self) -> "Etcd":
        super().start()
        self.wait_healthy(self.start_timeout)
        return self

    def get(self, key: str) -> dict | None:
        status, body = self.v2_get(key)
        if status == 404:
            return None
        assert status == 200, (status, body)
        return body["node"]


@pytest.fixture
def etcd(tmp_path):
    if not os.access(ETCD, os.X_OK):
        pytest.skip("needs Debian's etcd at " + ETCD)
    server = Etcd(str(tmp_path / "etcd")).start()
    yield server
    server.stop()


class Fleetd:
    """The stand-in as fleet.service runs it: configured through FLEET_* variables."""

    def __init__(self, tmp_path, etcd_url: str, ttl: str = "2s"):
        self.machine_id = uuid.uuid4().hex
        (tmp_path / "machine-id").write_text(self.machine_id + "\n")
        (tmp_path / "fleet.conf").write_text('# no settings: the environment has them all\n')
        self.stderr_path = tmp_path / "fleetd.log"
        self.argv = [sys.executable, FLEETD, "--config", str(tmp_path / "fleet.conf"),
                     "--machine-id-file", str(tmp_path / "machine-id")]
        self.env = dict(os.environ, FLEET_ETCD_SERVERS=etcd_url, FLEET_METADATA="cluster=x,region=y,instance_type=z",
                        FLEET_PUBLIC_IP="10.131.0.4", FLEET_AGENT_TTL=ttl)
        self.process: subprocess.Popen | None = None

    def start(self) -> "Fleetd":
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr)
        return self

    def log(self) -> str:
        return self.stderr_path.read_text()

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def make_fleetd(tmp_path):
    started: list[Fleetd] = []

    def make(etcd_url: str, ttl: str = "2s") -> Fleetd:
        started.append(Fleetd(tmp_path, etcd_url, ttl).start())
        return started[-1]

    yield make
    for process in started:
        process.kill()


def list_machines(etcd_url: str) -> list[list[str]]:
    result = subprocess.run([sys.executable, FLEETCTL_DOUBLE, "--endpoint", etcd_url, "list-machines", "--full",
                             "--no-legend"], capture_output=True, text=True, timeout=30, check=True)
    return [line.split() for line in result.stdout.splitlines() if line.strip()]


# --- against a real etcd -------------------------------------------------------------------------------

def test_registers_refreshes_and_expires_after_sigterm(etcd, make_fleetd):
    node = make_fleetd(etcd.url, ttl="2s")
    key = PREFIX + "machines/%s/object" % node.machine_id
    expected_row = [node.machine_id, "10.131.0.4", "cluster=x,instance_type=z,region=y"]
    wait_for("the machine in list-machines", lambda: list_machines(etcd.url) == [expected_row], timeout=15)

    stored = etcd.get(key)
    assert json.loads(stored["value"]) == {"ID": node.machine_id, "PublicIP": "10.131.0.4", "Version": "1.0.0",
                                           "Metadata": {"cluster": "x", "instance_type": "z", "region": "y"}}
    assert 0 < stored["ttl"] <= 2
    # Three TTLs later it is still there: the refresh works (every TTL/2).
    first_modified = stored["modifiedIndex"]
    time.sleep(6)
    assert node.process.poll() is None, node.log()
    assert etcd.get(key) is not None and etcd.get(key)["modifiedIndex"] > first_modified
    assert list_machines(etcd.url) == [expected_row]

    assert node.terminate() == 0
    stopped_at = time.monotonic()
    assert etcd.get(key) is not None, "fleetd removed its registration; fleet leaves it to expire"
    wait_for("the registration to expire", lambda: etcd.get(key) is None, timeout=10)
    # Expired by its TTL (2s; etcd's v2 store sweeps expired keys about every 500ms), not deleted at exit.
    assert time.monotonic() - stopped_at > 0.5
    assert list_machines(etcd.url) == []
    log = node.log()
    assert log.count("registered machine %s" % node.machine_id) == 1, log
    assert "received SIGTERM" in log


def test_waits_for_etcd_and_logs_once_per_state(tmp_path, make_fleetd):
    if not os.access(ETCD, os.X_OK):
        pytest.skip("needs Debian's etcd at " + ETCD)
    late = Etcd(str(tmp_path / "etcd"))
    node = make_fleetd(late.url, ttl="2s")
    try:
        wait_for("fleetd to report etcd unreachable", lambda: "not reachable" in node.log(), timeout=10)
        time.sleep(2.5)  # a few more retries, which must not be logged again
        assert node.process.poll() is None, node.log()
        late.start()
        wait_for("the machine in list-machines",
                 lambda: [row[0] for row in list_machines(late.url)] == [node.machine_id], timeout=15)
        assert node.terminate() == 0
    finally:
        late.stop()
    log = node.log()
    assert log.count("not reachable") == 1, log
    assert log.count("registered machine") == 1, log


def test_custom_key_prefix_and_flags_over_environment(etcd, tmp_path):
    """Command-line flags win over FLEET_* (stand-in only); the key prefix moves the registration."""
    machine_id = uuid.uuid4().hex
    (tmp_path / "machine-id").write_text(machine_id)
    (tmp_path / "fleet.conf").write_text('etcd_key_prefix="/from-file/"\n')
    env = dict(os.environ, FLEET_ETCD_SERVERS="http://127.0.0.1:9,  " + etcd.url, FLEET_PUBLIC_IP="10.0.0.1")
    process = subprocess.Popen([sys.executable, FLEETD, "--config", str(tmp_path / "fleet.conf"),
                                "--machine-id-file", str(tmp_path / "machine-id"), "-agent_ttl", "3s",
                                "--public_ip=10.131.0.9"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        key = "/from-file/machines/%s/object" % machine_id
        stored = wait_for("the registration under /from-file/", lambda: etcd.get(key), timeout=15)
        assert json.loads(stored["value"]) == {"ID": machine_id, "PublicIP": "10.131.0.9", "Metadata": {},
                                               "Version": "1.0.0"}
        assert 2 <= stored["ttl"] <= 3
        assert etcd.get(PREFIX + "machines") is None
    finally:
        process.kill()
        process.wait(timeout=10)


# --- the command line and configuration ------------------------------------------------------------------

def test_version():
    for argv in (["--version"], ["-version"], ["version"]):
        result = subprocess.run([sys.executable, FLEETD, *argv], capture_output=True, text=True, timeout=30,
                                check=False)
        assert result.returncode == 0
        assert result.stdout == ("fleetd version 1.0.0 (stand-in of the coreos_ec2.cluster sandbox: registers this "
                                 "machine only; no engine, no agent)\n")


def test_first_lines_say_what_it_is():
    with open(FLEETD, encoding="utf-8") as handle:
        head = handle.read(600)
    assert not head.startswith("#!") and "fleetd STAND-IN" in head and "This is not fleet's fleetd" in head


@pytest.mark.parametrize("raw, seconds", [("30s", 30), ("2s", 2), ("1m30s", 90), ("1.5h", 5400), ("500ms", 0.5),
                                          ("0", 0)])
def test_parse_duration(raw, seconds):
    assert fleetd.parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["30", "s", "1x", "", "3 s"])
def test_parse_duration_rejects(raw):
    with pytest.raises(fleetd.ConfigError):
        fleetd.parse_duration(raw)


@pytest.mark.parametrize("raw, metadata, skipped", [
    ("cluster=x,region=y,instance_type=z", {"cluster": "x", "instance_type": "z", "region": "y"}, []),
    (" a = 1 , b=2=3,", {"a": "1", "b": "2=3"}, []),
    ("", {}, []),
    ("broken,a=1", {"a": "1"}, ["broken"]),
])
def test_parse_metadata(raw, metadata, skipped):
    assert fleetd.parse_metadata(raw) == (metadata, skipped)


@pytest.mark.parametrize("raw, servers", [
    ("http://127.0.0.1:2379", ("http://127.0.0.1:2379",)),
    ("http://a:2379, http://b:2379", ("http://a:2379", "http://b:2379")),
    ('["http://a:4001"]', ("http://a:4001",)),
])
def test_parse_etcd_servers(raw, servers):
    assert fleetd.parse_etcd_servers(raw) == servers


def test_precedence_flag_then_environment_then_file_then_default(tmp_path):
    conf = tmp_path / "fleet.conf"
    conf.write_text('# comment\npublic_ip="10.0.0.3"\nmetadata = "role=file"\nagent_ttl="10s"\n'
                    'verbosity=2\n[other]\netcd_key_prefix="/ignored/"\n')
    (tmp_path / "machine-id").write_text("abc\n")
    args = fleetd.argument_parser().parse_args(["--config", str(conf), "--machine-id-file",
                                                str(tmp_path / "machine-id"), "-public_ip", "10.0.0.1"])
    env = {"FLEET_PUBLIC_IP": "10.0.0.2", "FLEET_METADATA": "role=env", "FLEET_AGENT_TTL": ""}
    config = fleetd.build_config(args, env)
    assert (config.public_ip, config.metadata, config.agent_ttl, config.etcd_key_prefix, config.etcd_servers) == (
        "10.0.0.1", {"role": "env"}, 10, "/_coreos.com/fleet/", ("http://127.0.0.1:2379", "http://127.0.0.1:4001"))
    assert fleetd.read_machine_id(config.machine_id_file) == "abc"


@pytest.mark.parametrize("argv, env, message", [
    (["--config", "/nonexistent/fleet.conf"], {}, "Unable to use config file"),
    ([], {"FLEET_AGENT_TTL": "500ms"}, "under one second"),
    ([], {"FLEET_AGENT_TTL": "soon"}, "invalid duration"),
    ([], {"FLEET_ETCD_SERVERS": " , "}, "etcd_servers is empty"),
])
def test_bad_configuration_exits_1(tmp_path, argv, env, message):
    conf = tmp_path / "empty.conf"
    conf.write_text("")
    argv = argv if argv else ["--config", str(conf)]
    result = subprocess.run([sys.executable, FLEETD, *argv], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, **env), check=False)
    assert result.returncode == 1 and message in result.stderr


def test_api_socket_answers_503_at_once(tmp_path):
    path = str(tmp_path / "fleet.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    stop = threading.Event()
    thread = threading.Thread(target=fleetd.serve_api_socket, args=(listener, stop), daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(path)
            client.sendall(b"GET /fleet/v1/machines HTTP/1.1\r\nHost: fleet\r\n\r\n")
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        head, _sep, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(body)["error"]["code"] == 503
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert not thread.is_alive()
