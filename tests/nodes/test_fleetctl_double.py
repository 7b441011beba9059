# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the fleetctl test double (roles/sandbox/files/node-image/opt/bin/fleetctl.py, the node image's fleetctl) against a real etcd.

The double is run as the nodes run it: as an executable, configured through FLEETCTL_* variables.
Expectations come from fleet's sources and documentation (named at each test), and the registry is
read back from etcd directly, not through the double, so a test fails when the double writes the wrong
keys even if it reads them back consistently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodes.double import DOUBLE, fleetctl_script
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
HOST = "127.0.0.1"
ETCD_START_TIMEOUT = 20.0
RUN_TIMEOUT = 60.0

# fleetctl shows 8 characters of a machine ID, then '...' and the public IP (machineFullLegend).
MACHINE_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
MACHINE_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MACHINE_C = "77777777666666665555555544444444"
LEGEND_A = "a1b2c3d4.../10.0.0.1"
LEGEND_B = "0f1e2d3c.../10.0.0.2"

# The unit and hash the task fixes: SHA1 of go-systemd's serialisation of the unit.
SLEEP_UNIT = "[Service]\nExecStart=/bin/sleep 100\n"
SLEEP_HASH = "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http(method: str, url: str, timeout: float = 3.0) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method=method), timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"raw": body.decode(errors="replace")}


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory):
    """A one-member etcd 3.4 with the v2 API on free loopback ports, stopped after the module."""
    if not os.access(ETCD, os.X_OK):
        pytest.skip("etcd is not installed")
    workdir = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    url = "http://%s:%d" % (HOST, client)
    peer_url = "http://%s:%d" % (HOST, peer)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}
    log = open(workdir / "etcd.log", "wb")  # pylint: disable=consider-using-with
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [ETCD, "--name", "double", "--data-dir", str(workdir / "data"), "--enable-v2",
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", "double=" + peer_url],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError("etcd exited with %s: %s" % (process.returncode, (workdir / "etcd.log").read_text()[-2000:]))
            try:
                if http("GET", url + "/v2/keys/", timeout=1.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not answer within %ss: %s"
                                   % (ETCD_START_TIMEOUT, (workdir / "etcd.log").read_text()[-2000:]))
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def table(self) -> list[list[str]]:
        """fleetctl's columns: tabwriter pads with one or more tabs."""
        return [re.split(r"\t+", line) for line in self.out.splitlines()]


class Fleet:
    """Runs the double for one test, in its own etcd key prefix, as one of several machines."""

    def __init__(self, etcd_url: str, tmp_path: Path, prefix: str):
        self.etcd_url = etcd_url
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.machines: dict[str, Path] = {}

    def env(self, machine: str | None, extra: dict | None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("FLEETCTL_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update({"FLEETCTL_ENDPOINT": self.etcd_url, "FLEETCTL_ETCD_KEY_PREFIX": self.prefix})
        if machine is not None:
            env["FLEETCTL_DOUBLE_MACHINE_ID_FILE"] = str(self.machines[machine])
        env.update(extra or {})
        return {key: value for key, value in env.items() if value is not None}

    def run(self, *args: str, machine: str | None = None, env: dict | None = None, cwd: Path | None = None) -> Result:
        done = subprocess.run([sys.executable, str(DOUBLE), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              env=self.env(machine, env), cwd=str(cwd or self.tmp_path), check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs) -> Result:
        result = self.run(*args, **kwargs)
        assert result.rc == 0, "fleetctl %s: rc %s\n%s%s" % (" ".join(args), result.rc, result.out, result.err)
        return result

    def register(self, machine_id: str, ip: str, metadata: str = "", ttl: int = 0) -> None:
        path = self.tmp_path / ("machine-id-" + machine_id)
        path.write_text(machine_id + "\n")
        self.machines[machine_id] = path
        self.ok("register-machine", "--ip", ip, "--metadata", metadata, "--ttl", str(ttl), machine=machine_id)

    def write(self, name: str, text: str, directory: Path | None = None) -> Path:
        path = (directory or self.tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        return path

    def tree(self) -> dict[str, str]:
        """Every key under the prefix (relative to it) and its value, read from etcd itself."""
        status, body = http("GET", self.etcd_url + "/v2/keys" + self.prefix.rstrip("/") + "?recursive=true")
        if status == 404:
            return {}
        leaves, stack = {}, [body["node"]]
        while stack:
            node = stack.pop()
            if node.get("dir"):
                stack.extend(node.get("nodes", []))
            else:
                leaves[node["key"][len(self.prefix):]] = node["value"]
        return leaves

    def unit_files(self) -> dict[str, dict[str, str]]:
        """list-unit-files with every field, by unit name."""
        result = self.ok("list-unit-files", "--full", "--fields=unit,hash,dstate,state,target,global,desc")
        header, *rows = result.table()
        return {row[0]: dict(zip(header, row)) for row in rows}


@pytest.fixture
def fleet(etcd_url, tmp_path):
    return Fleet(etcd_url, tmp_path, "/test-%s/fleet/" % uuid.uuid4().hex[:12])


def test_the_double_says_what_it_is():
    head = fleetctl_script().splitlines()[:8]
    assert head[0] == "#!/usr/bin/python3", "the nodes run it as an executable"
    assert "TEST DOUBLE" in "\n".join(head) and "not fleet" in "\n".join(head)


def test_hash_of_the_reference_unit_and_where_it_is_stored(fleet):
    fleet.write("sleep.service", SLEEP_UNIT)
    submitted = fleet.ok("submit", "sleep.service")
    # lazyCreateUnits waits for the new unit to be inactive and says so (fleetctl.go assertUnitState).
    assert submitted.out == "Unit sleep.service inactive\n"

    assert fleet.ok("list-unit-files", "--full", "--no-legend", "--fields=hash").out == SLEEP_HASH + "\n"
    assert fleet.ok("list-unit-files", "--no-legend", "--fields=hash").out == SLEEP_HASH[:7] + "\n"

    # registry/unit.go: unit/<hash> = {"Raw": ...}; registry/job.go: the object names the hash as Go
    # marshals a [20]byte (an array of numbers).
    tree = fleet.tree()
    assert json.loads(tree["unit/" + SLEEP_HASH]) == {"Raw": SLEEP_UNIT}
    job = json.loads(tree["job/sleep.service/object"])
    assert job == {"Name": "sleep.service", "UnitHash": list(bytes.fromhex(SLEEP_HASH))}
    assert tree["job/sleep.service/target-state"] == "inactive"


def test_hash_is_taken_over_the_reserialised_unit(fleet):
    # go-systemd drops comments and surrounding blanks, joins a backslash-continued line with a
    # space, and groups a section that appears twice under its first appearance.
    raw = ("; leading comment\n"
           "[Unit]\n"
           "Description = Hello   \n"
           "\n"
           "# a comment\n"
           "[Service]\n"
           "ExecStart=/bin/sh -c \\\n"
           "  \"sleep 1\"\n"
           "[Unit]\n"
           "After=a.service\n")
    canonical = ("[Unit]\nDescription=Hello\nAfter=a.service\n"
                 "\n"
                 "[Service]\nExecStart=/bin/sh -c    \"sleep 1\"\n")
    fleet.write("messy.service", raw)
    fleet.ok("submit", "messy.service")

    assert fleet.ok("cat", "messy.service").out == canonical
    assert fleet.unit_files()["messy.service"]["HASH"] == hashlib.sha1(canonical.encode()).hexdigest()
    assert fleet.unit_files()["messy.service"]["DESC"] == "Hello"


def test_lifecycle_submit_load_start_stop_unload_destroy(fleet):
    fleet.register(MACHINE_A, "10.0.0.1")
    fleet.register(MACHINE_B, "10.0.0.2")
    fleet.write("hello.service", "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n")

    def state() -> tuple[str, str, str]:
        row = fleet.unit_files()["hello.service"]
        return row["DSTATE"], row["STATE"], row["TARGET"]

    fleet.ok("submit", "hello.service")
    assert state() == ("inactive", "inactive", "-")
    assert "job/hello.service/target" not in fleet.tree()

    loaded = fleet.ok("load", "hello.service")
    assert loaded.out == "Unit hello.service loaded on %s\n" % LEGEND_B   # fewest units, then machine ID
    assert state() == ("loaded", "loaded", MACHINE_B + "/10.0.0.2")
    tree = fleet.tree()
    assert tree["job/hello.service/target-state"] == "loaded"
    assert tree["job/hello.service/target"] == MACHINE_B
    assert "job/hello.service/job-state" not in tree
    reported = json.loads(tree["states/hello.service/" + MACHINE_B])
    assert (reported["loadState"], reported["activeState"], reported["subState"]) == ("loaded", "inactive", "dead")
    assert fleet.ok("list-units", "--no-legend").table() == [["hello.service", LEGEND_B, "inactive", "dead"]]

    started = fleet.ok("start", "hello.service")
    assert started.out == "Unit hello.service launched on %s\n" % LEGEND_B
    assert state() == ("launched", "launched", MACHINE_B + "/10.0.0.2")
    assert fleet.tree()["job/hello.service/job-state"] == MACHINE_B
    assert fleet.ok("list-units", "--no-legend").table() == [["hello.service", LEGEND_B, "active", "running"]]
    # Starting what is launched changes nothing and prints nothing (setTargetStateOfUnits skips it).
    assert fleet.ok("start", "hello.service").out == ""

    assert fleet.ok("stop", "hello.service").out == "Unit hello.service loaded on %s\n" % LEGEND_B
    assert state() == ("loaded", "loaded", MACHINE_B + "/10.0.0.2")

    assert fleet.ok("unload", "hello.service").out == "Unit hello.service inactive\n"
    assert state() == ("inactive", "inactive", "-")
    tree = fleet.tree()
    assert not [key for key in tree if key.startswith("states/")]
    assert "job/hello.service/target" not in tree
    assert fleet.ok("list-units", "--no-legend").out == ""

    assert fleet.ok("destroy", "hello.service").out == "Destroyed hello.service\n"
    assert "hello.service" not in fleet.unit_files()
    tree = fleet.tree()
    assert not [key for key in tree if key.startswith("job/")]
    # fleet never deletes unit files (registry/job.go DestroyUnit: no reference counting yet).
    assert [key for key in tree if key.startswith("unit/")]


def test_without_machines_a_unit_waits_unscheduled(fleet):
    fleet.write("hello.service", SLEEP_UNIT)
    timed_out = fleet.run("start", "--block-attempts=2", "hello.service")
    assert timed_out.rc == 1
    assert timed_out.err == ("Error waiting for units: timed out waiting for unit hello.service to report state launched\n"
                             "Error waiting for unit states, exit status: 1\n")
    assert fleet.unit_files()["hello.service"]["DSTATE"] == "launched"
    assert fleet.unit_files()["hello.service"]["STATE"] == "inactive"
    assert fleet.unit_files()["hello.service"]["TARGET"] == "-"
    assert "job/hello.service/target" not in fleet.tree()

    fleet.write("other.service", "[Service]\nExecStart=/bin/true\n")
    no_block = fleet.ok("start", "--no-block", "other.service")
    assert no_block.out == "Unit other.service inactive\nTriggered unit other.service start\n"

    # A machine joining is when fleet's engine schedules what waits.
    fleet.register(MACHINE_A, "10.0.0.1")
    assert {name: row["STATE"] for name, row in fleet.unit_files().items()} == {
        "hello.service": "launched", "other.service": "launched"}


def test_two_machines_see_one_registry(fleet):
    fleet.register(MACHINE_A, "10.0.0.1", metadata="role=web,az=a")
    fleet.register(MACHINE_B, "10.0.0.2")
    listed = fleet.ok("list-machines", machine=MACHINE_A).out
    assert listed == fleet.ok("list-machines", machine=MACHINE_B).out
    assert fleet.ok("list-machines", "--no-legend").table() == [
        ["0f1e2d3c...", "10.0.0.2", "-"], ["a1b2c3d4...", "10.0.0.1", "az=a,role=web"]]
    assert json.loads(fleet.tree()["machines/%s/object" % MACHINE_A]) == {
        "ID": MACHINE_A, "PublicIP": "10.0.0.1", "Metadata": {"role": "web", "az": "a"}, "Version": "1.0.0"}

    fleet.write("one.service", "[Service]\nExecStart=/bin/sleep 1\n")
    fleet.write("two.service", "[Service]\nExecStart=/bin/sleep 2\n")
    fleet.ok("start", "one.service", machine=MACHINE_A)
    fleet.ok("start", "two.service", machine=MACHINE_B)
    seen_from_a = fleet.ok("list-units", "--full", "--no-legend", machine=MACHINE_A).out
    assert seen_from_a == fleet.ok("list-units", "--full", "--no-legend", machine=MACHINE_B).out
    # The second unit goes to the machine with fewer units.
    targets = {row[0]: row[1] for row in fleet.ok("list-units", "--no-legend", "--fields=unit,machine").table()}
    assert targets == {"one.service": LEGEND_B, "two.service": LEGEND_A}


def test_templates_and_instances(fleet, tmp_path):
    fleet.register(MACHINE_A, "10.0.0.1")
    template = "[Unit]\nDescription=Web %i\n\n[Service]\nExecStart=/bin/sleep %i\n"
    fleet.write("web@.service", template)
    fleet.ok("submit", "web@.service")

    # Instances of a template in the registry, started where no unit file lies (fleetctl.go getUnitFile).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fleet.ok("start", "web@1.service", "web@2", cwd=elsewhere)
    files = fleet.unit_files()
    template_hash = hashlib.sha1(template.encode()).hexdigest()
    assert {name: row["HASH"] for name, row in files.items()} == {
        "web@.service": template_hash, "web@1.service": template_hash, "web@2.service": template_hash}
    assert (files["web@1.service"]["STATE"], files["web@.service"]["STATE"]) == ("launched", "inactive")

    # A template cannot be launched (api/units.go).
    refused = fleet.run("start", "web@.service")
    assert (refused.rc, refused.err) == (1, 'Error starting units: googleapi: Error 400: cannot activate template "web@.service"\n')

    # An instance of a template that is only on disk, beside the named path.
    fleet.write("db@.service", "[Service]\nExecStart=/bin/db %i\n", tmp_path / "units")
    fleet.ok("submit", "units/db@7.service")
    assert fleet.ok("cat", "db@7.service").out == "[Service]\nExecStart=/bin/db %i\n"

    missing = fleet.run("submit", "nothing@1.service")
    assert missing.rc == 1
    assert missing.err == ("Error creating units: failed getting Unit(nothing@1.service) from template: "
                           "unable to find template Unit(nothing@.service) in Registry or on filesystem\n")
    plain = fleet.run("submit", "absent.service")
    assert plain.err == "Error creating units: unable to find Unit(absent.service) in Registry or on filesystem\n"


def test_replace(fleet):
    fleet.register(MACHINE_A, "10.0.0.1")
    first, second, third = ("[Service]\nExecStart=/bin/sleep %d\n" % n for n in (1, 2, 3))
    fleet.write("app.service", first)
    fleet.ok("submit", "app.service")

    # Same content again: nothing to do, nothing said.
    again = fleet.ok("submit", "app.service")
    assert (again.out, again.err) == ("", "")

    # Different content without --replace: a warning, exit 0, the registry keeps the old unit
    # (fleetctl.go isLocalUnitDifferent / checkUnitCreation).
    fleet.write("app.service", second)
    differs = fleet.ok("submit", "app.service")
    assert differs.err == ("WARNING: Unit app.service in registry differs from local unit file app.service. "
                           "Add --replace to override.\n")
    assert fleet.ok("cat", "app.service").out == first

    replaced = fleet.ok("submit", "--replace", "app.service")
    assert replaced.out == "Unit app.service inactive\n"
    assert fleet.ok("cat", "app.service").out == second
    assert fleet.unit_files()["app.service"]["HASH"] == hashlib.sha1(second.encode()).hexdigest()
    same = fleet.ok("submit", "--replace", "app.service")
    assert same.out == "Found same Unit(app.service) in Registry, nothing to do\n"

    # start --replace restarts the unit with the new content.
    fleet.ok("start", "app.service")
    fleet.write("app.service", third)
    restarted = fleet.ok("start", "--replace", "app.service")
    assert restarted.out == "Unit app.service inactive\nUnit app.service launched on %s\n" % LEGEND_A
    assert fleet.ok("cat", "app.service").out == third
    row = fleet.unit_files()["app.service"]
    assert (row["DSTATE"], row["STATE"]) == ("launched", "launched")

    # submit may only replace an inactive unit (checkReplaceUnitState).
    fleet.write("app.service", first)
    refused = fleet.ok("submit", "--replace", "app.service")
    assert refused.err == "Warning: can not replace Unit(app.service) in state 'launched', use the appropriate command\n"
    assert fleet.ok("cat", "app.service").out == third

    # --replace needs the local file to compare with.
    fleet.write("gone.service", first)
    fleet.ok("submit", "gone.service")
    (fleet.tmp_path / "gone.service").unlink()
    no_file = fleet.run("start", "--replace", "gone.service")
    assert (no_file.rc, no_file.err) == (1, "Error creating units: error Unit gone.service does not seem to be a template unit\n")


def test_fields_legend_and_full(fleet):
    fleet.register(MACHINE_A, "10.0.0.1")
    fleet.write("hello.service", "[Unit]\nDescription=Hello there\n[Service]\nExecStart=/bin/sleep 5\n")
    fleet.ok("start", "hello.service")
    unit_hash = hashlib.sha1(b"[Unit]\nDescription=Hello there\n\n[Service]\nExecStart=/bin/sleep 5\n").hexdigest()

    # Default columns of each list command (list_unit_files.go, list_units.go, list_machines.go).
    assert fleet.ok("list-unit-files").table() == [
        ["UNIT", "HASH", "DSTATE", "STATE", "TARGET"], ["hello.service", unit_hash[:7], "launched", "launched", LEGEND_A]]
    assert fleet.ok("list-units").table() == [["UNIT", "MACHINE", "ACTIVE", "SUB"],
                                              ["hello.service", LEGEND_A, "active", "running"]]
    assert fleet.ok("list-machines").table() == [["MACHINE", "IP", "METADATA"], ["a1b2c3d4...", "10.0.0.1", "-"]]

    assert fleet.ok("list-unit-files", "--no-legend", "--fields=desc,global,unit").table() == [
        ["Hello there", "false", "hello.service"]]
    assert fleet.ok("list-unit-files", "--full", "--no-legend", "--fields=hash,target").table() == [
        [unit_hash, MACHINE_A + "/10.0.0.1"]]
    assert fleet.ok("list-units", "-l", "--no-legend", "--fields=unit,hash,load,machine").table() == [
        ["hello.service", unit_hash, "loaded", MACHINE_A + "/10.0.0.1"]]
    assert fleet.ok("list-machines", "--full", "--no-legend", "--fields=machine").out == MACHINE_A + "\n"

    tmachine = fleet.ok("list-unit-files", "--no-legend", "--fields=tmachine")
    assert (tmachine.out, tmachine.err) == (LEGEND_A + "\n", 'WARNING: The "tmachine" field is deprecated. Use "target" instead\n')

    for command in ("list-unit-files", "list-units", "list-machines"):
        bad = fleet.run(command, "--fields=bogus")
        assert (bad.rc, bad.out, bad.err) == (1, "", 'Invalid key in output format: "bogus"\n'), command
        empty = fleet.run(command, "--fields=")
        assert (empty.rc, empty.err) == (1, "Must define output format\n"), command
    # Field names are not trimmed: fleetctl splits on ',' only.
    assert fleet.run("list-units", "--fields=unit, sub").err == 'Invalid key in output format: " sub"\n'


def test_columns_are_aligned_like_gos_tabwriter(fleet):
    # fleetctl writes through text/tabwriter (minwidth 0, tabwidth 8, padding 1, padchar '\t'): a column
    # is as wide as its widest cell plus one, rounded up to a multiple of 8, and filled with tabs.
    fleet.register(MACHINE_A, "10.0.0.1", metadata="role=web,az=a")
    fleet.register(MACHINE_B, "10.0.0.2")
    assert fleet.ok("list-machines").out == ("MACHINE\t\tIP\t\tMETADATA\n"
                                             "0f1e2d3c...\t10.0.0.2\t-\n"
                                             "a1b2c3d4...\t10.0.0.1\taz=a,role=web\n")
    assert fleet.ok("list-machines", "--full").out == (
        "MACHINE\t\t\t\t\tIP\t\tMETADATA\n"
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0\t10.0.0.2\t-\n"
        "a1b2c3d4e5f60718293a4b5c6d7e8f90\t10.0.0.1\taz=a,role=web\n")
    # The boundary: 'running' is 7 wide, plus padding makes 8, which needs no rounding up.
    fleet.write("hello.service", SLEEP_UNIT)
    fleet.ok("start", "hello.service")
    assert fleet.ok("list-units", "--fields=sub,unit").out == "SUB\tUNIT\nrunning\thello.service\n"
    # A line without tabs is no column and ends nothing: the last cell is never padded.
    assert fleet.ok("list-units", "--fields=unit").out == "UNIT\nhello.service\n"


def test_scheduling_requirements(fleet):
    fleet.register(MACHINE_A, "10.0.0.1", metadata="role=web")
    fleet.register(MACHINE_B, "10.0.0.2", metadata="role=db")
    fleet.register(MACHINE_C, "10.0.0.3", metadata="role=web")
    fleet.write("pinned.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=%s\n" % MACHINE_C[:8])
    fleet.write("db.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=db\n")
    fleet.write("web@.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=web\nConflicts=web@*\n")
    fleet.write("agent.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n")
    fleet.ok("start", "pinned.service", "db.service", "web@1.service", "web@2.service")

    targets = {name: row["TARGET"].split("/")[0] for name, row in fleet.unit_files().items()}
    assert targets["pinned.service"] == MACHINE_C
    assert targets["db.service"] == MACHINE_B
    assert {targets["web@1.service"], targets["web@2.service"]} == {MACHINE_A, MACHINE_C}

    # No third web machine: the conflict keeps web@3 unscheduled.
    waiting = fleet.run("start", "--block-attempts=1", "web@3.service")
    assert waiting.rc == 1 and fleet.unit_files()["web@3.service"]["TARGET"] == "-"

    # A global unit runs on every machine that qualifies; it has no target and no current state.
    started = fleet.ok("start", "agent.service")
    assert started.out == "Unit agent.service \nTriggered global unit agent.service start\n"
    row = fleet.unit_files()["agent.service"]
    assert (row["GLOBAL"], row["TARGET"], row["STATE"], row["DSTATE"]) == ("true", "global", "-", "launched")
    machines = [cells[1] for cells in fleet.ok("list-units", "--no-legend", "--full", "--fields=unit,machine").table()
                if cells[0] == "agent.service"]
    assert sorted(machines) == sorted([MACHINE_A + "/10.0.0.1", MACHINE_C + "/10.0.0.3"])
    assert fleet.ok("stop", "agent.service").out == "Triggered global unit agent.service stop\n"

    # Combinations fleet refuses before storing anything (api.ValidateOptions).
    fleet.write("bad.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nConflicts=x*\n")
    refused = fleet.run("submit", "bad.service")
    assert (refused.rc, refused.err) == (1, "Error creating units: Global cannot be used with Conflicts\n")
    assert "bad.service" not in fleet.unit_files()


def test_errors_for_units_that_are_missing_or_not_running(fleet):
    fleet.register(MACHINE_A, "10.0.0.1")
    fleet.write("idle.service", SLEEP_UNIT)
    fleet.ok("submit", "idle.service")

    stopped = fleet.run("stop", "idle.service")
    assert (stopped.rc, stopped.err) == (1, "Unable to stop unit idle.service in state inactive\n")
    assert fleet.run("cat", "nope.service").err == "Unit nope.service not found\n"
    assert fleet.run("cat").err == "One unit file must be provided\n"
    status = fleet.run("status", "nope.service")
    assert (status.rc, status.err) == (1, "Unit nope.service does not exist.\n")
    assert fleet.run("status", "idle.service").err == "Unit idle.service does not appear to be running.\n"
    destroyed = fleet.run("destroy", "nope.service")
    assert (destroyed.rc, destroyed.err) == (0, "Units not found in registry\n")
    assert fleet.run("submit").err == "No units given\n"
    # Unknown units are skipped silently by stop and unload (fleetctl.go findUnits).
    assert fleet.ok("unload", "nope.service").out == ""

    fleet.ok("load", "idle.service")
    loaded_status = fleet.run("status", "idle")
    assert loaded_status.rc == 3 and "Active: inactive (dead)" in loaded_status.out
    fleet.ok("start", "idle.service")
    assert "Active: active (running)" in fleet.ok("status", "idle.service").out
    journal = fleet.ok("journal", "idle.service")
    assert journal.out == "" and "test double" in journal.err


def test_unreachable_etcd(fleet):
    port = free_port()  # nothing listens there
    down = {"FLEETCTL_ENDPOINT": "http://127.0.0.1:%d" % port}
    cause = ("client: etcd cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:%d: "
             "getsockopt: connection refused\n" % port)
    fleet.write("hello.service", SLEEP_UNIT)
    expected = {
        ("list-unit-files",): "Error retrieving list of units from repository: " + cause,
        ("list-units",): "Error retrieving list of units from repository: " + cause,
        ("list-machines",): "Error retrieving list of active machines: " + cause,
        ("submit", "hello.service"): "Error creating units: error retrieving Unit(hello.service) from Registry: " + cause,
        ("start", "hello.service"): "Error creating units: error retrieving Unit(hello.service) from Registry: " + cause,
        ("stop", "hello.service"): cause,
        ("destroy", "hello.service"): cause,
        ("cat", "hello.service"): "Error retrieving Unit hello.service: " + cause,
    }
    for args, message in expected.items():
        result = fleet.run(*args, env=down)
        assert (result.rc, result.out, result.err) == (1, "", message), args


def test_flags_and_environment(fleet, etcd_url):
    fleet.write("hello.service", SLEEP_UNIT)
    fleet.ok("submit", "hello.service")
    # FLEETCTL_ETCD_KEY_PREFIX put the unit under the test's prefix, not the default one.
    assert "job/hello.service/object" in fleet.tree()
    assert http("GET", etcd_url + "/v2/keys/_coreos.com/fleet/job/hello.service")[0] == 404

    # The command line wins over the environment; global flags may follow the command.
    other_prefix = "/test-%s/other/" % uuid.uuid4().hex[:12]
    assert fleet.ok("list-unit-files", "--no-legend", "--etcd-key-prefix", other_prefix).out == ""
    assert fleet.ok("--etcd-key-prefix=" + fleet.prefix, "list-unit-files", "--no-legend").out.startswith("hello.service")

    # With fleetctl's default endpoint (the fleet socket) the double finds etcd through FLEETCTL_DOUBLE_ETCD.
    via_double_env = {"FLEETCTL_ENDPOINT": None, "FLEETCTL_DOUBLE_ETCD": etcd_url}
    assert fleet.ok("list-unit-files", "--no-legend", env=via_double_env).out.startswith("hello.service")

    # Only global flags come from the environment (getFlagsFromEnv on the persistent flags).
    assert fleet.ok("list-unit-files", env={"FLEETCTL_NO_LEGEND": "true"}).out.startswith("UNIT")

    driver = fleet.run("list-units", env={"FLEETCTL_DRIVER": "carrier-pigeon"})
    assert (driver.rc, driver.err) == (1, 'Unable to initialize client: unrecognized driver "carrier-pigeon"\n')
    assert fleet.run("list-units", "--bogus").rc == 2
    assert fleet.run("frobnicate").rc == 2
    assert fleet.ok("--version").out == "fleetctl version 1.0.0\n"
    # Unique prefixes select a command, as with cobra's prefix matching.
    assert fleet.ok("list-unit-f", "--no-legend").out.startswith("hello.service")


def test_machine_registration_expires_with_its_ttl(fleet):
    fleet.register(MACHINE_A, "10.0.0.1", ttl=1)
    assert fleet.ok("list-machines", "--no-legend", "--fields=machine").out == "a1b2c3d4...\n"
    deadline = time.monotonic() + 10
    while fleet.ok("list-machines", "--no-legend").out and time.monotonic() < deadline:
        time.sleep(0.3)
    assert fleet.ok("list-machines", "--no-legend").out == ""

    fleet.register(MACHINE_B, "10.0.0.2")
    fleet.ok("unregister-machine", machine=MACHINE_B)
    assert "machines/%s/object" % MACHINE_B not in fleet.tree()
