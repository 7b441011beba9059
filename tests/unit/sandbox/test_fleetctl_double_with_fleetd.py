# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node image's fleetctl double beside fleetd (the stand-in, with a fake systemctl), on a real etcd.

Where a fleetd runs, the double must behave as fleetctl: write units and desired states only, wait for what
the agents report, and show it; its shortcut of playing engine and agents itself is for registries without
a fleetd. The registry is read back from etcd directly."""

from __future__ import annotations

import json
import re

import pytest

from fleet_cluster import FleetdProcess, Registry, new_prefix, start_etcd, state_of, wait_for

MACHINE_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
MACHINE_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
HELLO = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n"
BAD = "[Unit]\nDescription=Fails at once\n\n[Service]\nExecStart=/bin/false\n"
LOG = "[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n"
# Fast loops so the tests stay short: the engine every 0.5 s (lease TTL 3 s), agents every 0.2 s.
FAST = {"FLEET_ENGINE_RECONCILE_INTERVAL": "0.5"}


@pytest.fixture
def etcd(tmp_path):
    server = start_etcd(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def cluster(etcd, tmp_path):
    """Two machines running fleetd on one registry: A (role=web, 10.131.0.1) and B (role=db, 10.131.0.2)."""
    prefix = new_prefix()
    machines = {machine_id: FleetdProcess(tmp_path / machine_id[:8], etcd.url, "5s", prefix, machine_id, FAST,
                                          public_ip="10.131.0.%d" % number, metadata="role=" + role).start()
                for number, (machine_id, role) in enumerate(((MACHINE_A, "web"), (MACHINE_B, "db")), 1)}
    registry = Registry(etcd.url, prefix)
    try:
        wait_for("both machines and an engine leader",
                 lambda: len(registry.fleetd.machines()) == 2 and "lease/engine-leader" in registry.tree(), timeout=20)
        yield registry, machines
    finally:
        for process in machines.values():
            process.kill()


@pytest.mark.parametrize("marker", ["lease/engine-leader", "engine/version", None])
def test_the_double_writes_desired_states_only_where_an_engine_runs(etcd, tmp_path, marker):
    """The keys a fleetd's engine writes (pkg/lease, engine/engine.go) tell the double a fleetd runs."""
    registry = Registry(etcd.url, new_prefix())
    (tmp_path / "machine-id").write_text(MACHINE_A + "\n")
    assert registry.double("register-machine", "--ip", "10.0.0.1", machine_id_file=tmp_path / "machine-id").returncode == 0
    if marker == "lease/engine-leader":
        etcd.put(registry.prefix + marker, json.dumps({"MachineID": MACHINE_B, "Version": 1}), ttl=60)
    elif marker == "engine/version":
        etcd.put(registry.prefix + marker, "1")
    (tmp_path / "hello.service").write_text(HELLO)

    started = registry.double("start", "--no-block", str(tmp_path / "hello.service"))
    assert (started.returncode, started.stdout) == (0, "Unit hello.service inactive\nTriggered unit hello.service start\n")
    tree = registry.tree()
    assert tree["job/hello.service/target-state"]["value"] == "launched"
    written_by_the_double = sorted(key for key in tree
                                   if key.startswith(("states/", "job/hello.service/t", "job/hello.service/job-state")))
    if marker is None:
        # No fleetd: the double schedules the unit and writes what the agent would report.
        assert written_by_the_double == ["job/hello.service/job-state", "job/hello.service/target",
                                         "job/hello.service/target-state", "states/hello.service/" + MACHINE_A]
        assert registry.double("list-units", "--no-legend").stdout.split() == [
            "hello.service", "a1b2c3d4.../10.0.0.1", "active", "running"]
    else:
        # A fleetd: the engine schedules and the agents report; the double wrote the desired state only.
        assert written_by_the_double == ["job/hello.service/target-state"]
        assert registry.double("list-units", "--no-legend").stdout == ""
        blocked = registry.double("start", "--block-attempts=2", "hello.service")
        assert blocked.returncode == 0 and blocked.stdout == ""  # already launched as desired: nothing to wait for
        stopped = registry.double("stop", "--block-attempts=2", "hello.service")
        assert (stopped.returncode, stopped.stderr) == (1, "Unable to stop unit hello.service in state inactive\n")


def test_start_stop_unload_destroy_wait_for_what_the_agents_report(cluster, tmp_path):
    registry, machines = cluster
    for name, text in (("hello.service", HELLO), ("bad.service", BAD), ("log.service", LOG)):
        (tmp_path / name).write_text(text)

    # fleetctl start waits until each unit is launched: scheduled, its state published, its heartbeat there.
    started = registry.double("start", str(tmp_path / "hello.service"), str(tmp_path / "bad.service"))
    assert started.returncode == 0, started.stderr
    lines = started.stdout.splitlines()
    assert lines[:2] == ["Unit hello.service inactive", "Unit bad.service inactive"]
    legends = {"0f1e2d3c.../10.131.0.2", "a1b2c3d4.../10.131.0.1"}
    launched = [re.fullmatch(r"Unit (\S+) launched on (\S+)", line) for line in lines[2:]]
    assert all(launched) and {match.group(2) for match in launched} == legends, started.stdout
    targets = registry.targets()
    assert {targets["hello.service"], targets["bad.service"]} == {MACHINE_A, MACHINE_B}

    # list-units shows systemd's states as the agents reported them; bad.service failed, which the double's
    # own shortcut would never have made up.
    listed = {row.split()[0]: row.split()[2:] for row in registry.double("list-units", "--no-legend").stdout.splitlines()}
    assert listed == {"hello.service": ["active", "running"], "bad.service": ["failed", "failed"]}
    tree = registry.tree()
    for name in ("hello.service", "bad.service"):
        state = tree["states/%s/%s" % (name, targets[name])]
        assert "ttl" in state  # published by an agent, with agent_ttl
        assert json.loads(state["value"])["machineState"]["ID"] == targets[name]
        assert tree["job/%s/job-state" % name]["value"] == targets[name]
    hello_machine = machines[targets["hello.service"]]
    assert hello_machine.systemd()["active"]["hello.service"] == ["active", "running"]
    assert (hello_machine.units_dir / "hello.service").read_text() == HELLO
    status = registry.double("status", "bad.service")
    assert status.returncode == 3 and "Active: failed (failed)" in status.stdout
    files = {row.split()[0]: row.split()[1:] for row in
             registry.double("list-unit-files", "--no-legend", "--fields=unit,dstate,state").stdout.splitlines()}
    assert files == {"hello.service": ["launched", "launched"], "bad.service": ["launched", "launched"]}

    # stop waits for loaded: the agent stopped it (systemd says so) and its heartbeat is gone.
    stopped = registry.double("stop", "hello.service")
    assert stopped.stdout == "Unit hello.service loaded on %s\n" % (
        "a1b2c3d4.../10.131.0.1" if targets["hello.service"] == MACHINE_A else "0f1e2d3c.../10.131.0.2")
    wait_for("systemd to stop hello",
             lambda: hello_machine.systemd()["active"]["hello.service"] == ["inactive", "dead"], timeout=10)
    assert "job/hello.service/job-state" not in registry.tree()

    # unload waits for inactive (the engine unscheduled it); the agent then removes the unit file.
    unloaded = registry.double("unload", "hello.service")
    assert unloaded.stdout == "Unit hello.service inactive\n"
    wait_for("the unit file to go", lambda: not (hello_machine.units_dir / "hello.service").exists(), timeout=10)
    wait_for("hello's state to be withdrawn",
             lambda: not [key for key in registry.tree() if key.startswith("states/hello.service/")], timeout=10)

    # destroy: the unit goes from the registry; the agent unloads it and withdraws its state.
    destroyed = registry.double("destroy", "bad.service")
    assert destroyed.stdout == "Destroyed bad.service\n"
    bad_machine = machines[targets["bad.service"]]
    wait_for("bad's unit file to go", lambda: not (bad_machine.units_dir / "bad.service").exists(), timeout=10)
    wait_for("bad's state to be withdrawn",
             lambda: not [key for key in registry.tree() if key.startswith("states/bad.service/")], timeout=10)

    # A global unit: triggered, then run by the agent of every machine with its metadata (A only).
    triggered = registry.double("start", str(tmp_path / "log.service"))
    assert triggered.stdout == "Unit log.service \nTriggered global unit log.service start\n"
    wait_for("A to run the global unit", lambda: "states/log.service/" + MACHINE_A in registry.tree(), timeout=10)
    assert state_of(registry.tree()["states/log.service/" + MACHINE_A]) == ("loaded", "active", "running")
    assert "states/log.service/" + MACHINE_B not in registry.tree()
    assert "log.service" not in machines[MACHINE_B].systemd().get("links", {})


def test_a_unit_no_machine_can_take_times_out_as_with_fleetctl(cluster, tmp_path):
    registry, _machines = cluster
    (tmp_path / "nowhere.service").write_text("[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=ffffffff\n")
    waited = registry.double("start", "--block-attempts=3", str(tmp_path / "nowhere.service"))
    assert waited.returncode == 1
    assert waited.stderr == ("Error waiting for units: timed out waiting for unit nowhere.service to report state "
                             "launched\nError waiting for unit states, exit status: 1\n")
    assert registry.targets() == {"nowhere.service": ""}
