# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the tests of the node image's fleetd stand-in and fleetctl double share: a real etcd (Debian's 3.4,
v2 API), the two programs loaded as modules, fleetd run as fleet.service runs it (with a fake systemctl), the
fleetctl double run as the nodes run it, and readers of the registry straight from etcd."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

import pytest
from support.etcd import EtcdServer, etcd_available, http_json

from fake_systemctl import FakeSystemctl
from node_image import IMAGE, load_program

FLEETD = IMAGE / "opt" / "bin" / "fleetd.py"
DOUBLE = IMAGE / "opt" / "bin" / "fleetctl.py"
PREFIX = "/_coreos.com/fleet/"

fleetd = load_program("opt/bin/fleetd.py", "sandbox_fleetd")
double = load_program("opt/bin/fleetctl.py", "sandbox_fleetctl_double")


def wait_for(what: str, check: Callable[[], object], timeout: float, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Etcd(EtcdServer):
    """One etcd member with the v2 API on loopback (tests/support), with what these tests read of it."""

    def __init__(self, data_dir: str, client_port: int | None = None):
        super().__init__(data_dir, name="test", start_timeout=20, client_port=client_port)
        self.url = self.client_url

    def start(self) -> "Etcd":
        super().start()
        return self

    def start_healthy(self, attempts: int = 5) -> "Etcd":
        super().start_healthy(attempts)
        self.url = self.client_url
        return self

    def get(self, key: str) -> dict | None:
        status, body = self.v2_get(key)
        if status == 404:
            return None
        assert status == 200, (status, body)
        return body["node"]

    def tree(self, prefix: str) -> dict[str, dict]:
        return read_tree(self.url, prefix)

    def put(self, key: str, value: str, ttl: int | None = None) -> None:
        form = {"value": value, **({"ttl": str(ttl)} if ttl else {})}
        request = urllib.request.Request("%s/v2/keys/%s" % (self.url, key.lstrip("/")),
                                         data=urllib.parse.urlencode(form).encode(), method="PUT",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5):
            pass


def read_tree(etcd_url: str, prefix: str) -> dict[str, dict]:
    """Every value node under prefix, by key relative to it: {"value", "ttl" (when it has one), ...}."""
    status, body = http_json("GET", "%s/v2/keys/%s?recursive=true" % (etcd_url, prefix.strip("/")))
    if status == 404:
        return {}
    assert status == 200, (status, body)
    found, stack = {}, [body["node"]]
    while stack:
        node = stack.pop()
        if node.get("dir"):
            stack.extend(node.get("nodes", []))
        else:
            found[node["key"][len(prefix.rstrip("/")) + 1:]] = node
    return found


def start_etcd(tmp_path: Path) -> Etcd:
    if not etcd_available():
        pytest.skip("needs an etcd binary (Debian's etcd-server)")
    return Etcd(str(tmp_path / "etcd")).start_healthy()


def new_prefix() -> str:
    return "/test-%s/fleet/" % uuid.uuid4().hex[:12]


class Registry:
    """fleet's registry for one test: written as fleetctl writes it (the double's code), read as fleetd reads it."""

    def __init__(self, etcd_url: str, prefix: str):
        self.etcd_url = etcd_url
        self.prefix = prefix
        self.fleetctl = double.Registry(double.Etcd([etcd_url], 5.0, None, False), prefix)
        self.fleetd = fleetd.Registry(fleetd.Etcd([etcd_url], 5.0), prefix)

    def submit(self, name: str, text: str, state: str = "inactive") -> str:
        """The unit stored and its desired state set, as `fleetctl submit` + load/start do; its hash."""
        unit_file = double.UnitFile.parse(text)
        self.fleetctl.create_unit(name, unit_file, replace=True)
        if state != "inactive":
            self.fleetctl.set_target_state(name, state)
        return unit_file.hash()

    def set_state(self, name: str, state: str) -> None:
        self.fleetctl.set_target_state(name, state)

    def register(self, machine_id: str, public_ip: str = "", metadata: dict | None = None, ttl: int = 600) -> None:
        self.fleetd.set_machine_state(fleetd.Machine(machine_id, public_ip, dict(metadata or {}), "1.0.0"), ttl)

    def targets(self) -> dict[str, str]:
        return {unit.name: unit.target for unit in self.fleetd.units()}

    def tree(self) -> dict[str, dict]:
        """The registry as etcd holds it, read directly: key (relative to the prefix) -> etcd node."""
        return read_tree(self.etcd_url, self.prefix)

    def double(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_double(self.etcd_url, self.prefix, *args, **kwargs)


class FleetdProcess:
    """The stand-in as fleet.service runs it, configured through FLEET_* variables, with a fake systemctl
    and a units directory of its own."""

    def __init__(self, work_dir: Path, etcd_url: str, ttl: str = "2s", prefix: str = "", machine_id: str = "",
                 extra_env: dict | None = None, public_ip: str = "10.131.0.4",
                 metadata: str = "cluster=x,region=y,instance_type=z", agent_interval: float = 0.2):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.machine_id = machine_id or uuid.uuid4().hex
        (work_dir / "machine-id").write_text(self.machine_id + "\n")
        (work_dir / "fleet.conf").write_text('# no settings: the environment has them all\n')
        self.units_dir = work_dir / "units"
        self.systemctl = FakeSystemctl.script(work_dir)
        self.stderr_path = work_dir / "fleetd.log"
        self.argv = [sys.executable, str(FLEETD), "--config", str(work_dir / "fleet.conf"),
                     "--machine-id-file", str(work_dir / "machine-id"), "--units-dir", str(self.units_dir),
                     "--systemctl", str(self.systemctl), "--agent-interval", str(agent_interval)]
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("FLEET_") and key.lower() not in ("http_proxy", "https_proxy")}
        self.env.update(FLEET_ETCD_SERVERS=etcd_url, FLEET_METADATA=metadata, FLEET_PUBLIC_IP=public_ip,
                        FLEET_AGENT_TTL=ttl)
        if prefix:
            self.env["FLEET_ETCD_KEY_PREFIX"] = prefix
        self.env.update(extra_env or {})
        self.process: subprocess.Popen | None = None

    def start(self) -> "FleetdProcess":
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr)
        return self

    def log(self) -> str:
        return self.stderr_path.read_text()

    def systemd(self) -> dict:
        """The fake systemctl's state: links, loaded units, active states, calls."""
        return FakeSystemctl.load(self.work_dir / "systemctl.json")

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def run_double(etcd_url: str, prefix: str, *args: str, machine_id_file: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """The fleetctl double as the nodes run it, on the test's registry."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("FLEETCTL_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(FLEETCTL_ENDPOINT=etcd_url, FLEETCTL_ETCD_KEY_PREFIX=prefix)
    if machine_id_file is not None:
        env["FLEETCTL_DOUBLE_MACHINE_ID_FILE"] = str(machine_id_file)
    return subprocess.run([sys.executable, str(DOUBLE), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def state_of(node: dict) -> tuple[str, str, str]:
    model = json.loads(node["value"])
    return model["loadState"], model["activeState"], model["subState"]
