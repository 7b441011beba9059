# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node image's fleetd stand-in against a real etcd (Debian's 3.4, v2 API) and a fake systemctl: its
configuration, the machine's registration, the engine (leader election, scheduling, rescheduling) and the
agent (unit files, systemctl calls, the states it reports), and fleetd's Purge at SIGTERM.

Expectations come from fleet v1.0.0's sources (named at each test); the registry is read back from etcd
directly, so a test fails when fleetd writes the wrong keys even if it reads them back consistently."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from fake_systemctl import FakeSystemctl
from fleet_cluster import (FLEETD, PREFIX, Etcd, FleetdProcess, Registry, double, fleetd, new_prefix, run_double,
                           start_etcd, state_of, wait_for)

MACHINE_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
MACHINE_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MACHINE_C = "77777777666666665555555544444444"
HELLO = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n"


@pytest.fixture
def etcd(tmp_path):
    server = start_etcd(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def registry(etcd):
    return Registry(etcd.url, new_prefix())


@pytest.fixture
def make_fleetd(tmp_path):
    started: list[FleetdProcess] = []

    def make(etcd_url: str, ttl: str = "2s", **kwargs) -> FleetdProcess:
        started.append(FleetdProcess(tmp_path / ("fleetd-%d" % len(started)), etcd_url, ttl, **kwargs).start())
        return started[-1]

    yield make
    for process in started:
        process.kill()


def list_machines(etcd_url: str, prefix: str = PREFIX) -> list[list[str]]:
    result = run_double(etcd_url, prefix, "list-machines", "--full", "--no-legend")
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines() if line.strip()]


def engine(registry: Registry, machine_id: str, interval: float = 0.2, **kwargs) -> "fleetd.Engine":
    return fleetd.Engine(registry.fleetd, machine_id, interval, **kwargs)


def agent(registry: Registry, machine_id: str, tmp_path, metadata: dict | None = None,
          systemctl: FakeSystemctl | None = None, ttl: int = 10, **kwargs) -> "fleetd.Agent":
    units_dir = tmp_path / ("units-" + machine_id[:8])
    return fleetd.Agent(registry.fleetd, fleetd.Machine(machine_id, "10.0.0.1", dict(metadata or {}), "1.0.0"),
                        str(units_dir), fleetd.Systemd(systemctl or FakeSystemctl()), ttl, **kwargs)


# --- registration, against a real etcd ---------------------------------------------------------------------

def test_registers_refreshes_and_deregisters_at_sigterm(etcd, make_fleetd):
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

    # fleetd's shutdown (fleetd/fleetd.go) runs server.Purge, whose heart.Clear deletes the registration.
    assert node.terminate() == 0
    assert etcd.get(key) is None, "the registration outlived fleetd's Purge"
    assert list_machines(etcd.url) == []
    log = node.log()
    assert log.count("registered machine %s" % node.machine_id) == 1, log
    assert "received SIGTERM" in log and "removed machine %s from the registry" % node.machine_id in log


def test_a_killed_fleetd_leaves_its_registration_to_expire(etcd, make_fleetd):
    node = make_fleetd(etcd.url, ttl="2s")
    key = PREFIX + "machines/%s/object" % node.machine_id
    wait_for("the registration", lambda: etcd.get(key), timeout=15)
    node.kill()
    killed_at = time.monotonic()
    wait_for("the registration to expire", lambda: etcd.get(key) is None, timeout=10)
    # Expired by its TTL (2s; etcd's v2 store sweeps expired keys about every 500ms).
    assert time.monotonic() - killed_at > 0.5


def test_waits_for_etcd_and_logs_once_per_state(tmp_path, make_fleetd):
    late = Etcd(str(tmp_path / "etcd"))
    if not os.access(late.command()[0], os.X_OK):
        pytest.skip("needs an etcd binary")
    node = make_fleetd(late.url, ttl="2s")
    try:
        wait_for("fleetd to report etcd unreachable", lambda: "not reachable" in node.log(), timeout=10)
        time.sleep(2.5)  # a few more retries, which must not be logged again
        assert node.process.poll() is None, node.log()
        late.start()
        wait_for("the machine in list-machines",
                 lambda: [row[0] for row in list_machines(late.url)] == [node.machine_id], timeout=15)
        wait_for("the engine to lead", lambda: late.get(PREFIX + "lease/engine-leader"), timeout=15)
        assert node.terminate() == 0
    finally:
        late.stop()
    log = node.log()
    registration_errors = [line for line in log.splitlines() if "not reachable" in line and "retrying every" in line]
    assert len(registration_errors) == 1, log
    assert log.count("registered machine") == 1, log
    # The engine and the agent log the outage once each, then their recovery.
    assert log.count("ERROR fleetd: engine: etcd not reachable") == 1, log
    assert log.count("ERROR fleetd: agent: etcd not reachable") == 1, log
    assert "engine: working again" in log and "agent: working again" in log


def test_custom_key_prefix_and_flags_over_environment(etcd, tmp_path):
    """Command-line flags win over FLEET_* (stand-in only); the key prefix moves the whole registry."""
    machine_id = uuid.uuid4().hex
    (tmp_path / "machine-id").write_text(machine_id)
    (tmp_path / "fleet.conf").write_text('etcd_key_prefix="/from-file/"\n')
    env = dict(os.environ, FLEET_ETCD_SERVERS="http://127.0.0.1:9,  " + etcd.url, FLEET_PUBLIC_IP="10.0.0.1")
    process = subprocess.Popen([sys.executable, str(FLEETD), "--config", str(tmp_path / "fleet.conf"),
                                "--machine-id-file", str(tmp_path / "machine-id"), "-agent_ttl", "3s",
                                "--public_ip=10.131.0.9", "--units-dir", str(tmp_path / "units"),
                                "--systemctl", str(FakeSystemctl.script(tmp_path))], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        key = "/from-file/machines/%s/object" % machine_id
        stored = wait_for("the registration under /from-file/", lambda: etcd.get(key), timeout=15)
        assert json.loads(stored["value"]) == {"ID": machine_id, "PublicIP": "10.131.0.9", "Metadata": {},
                                               "Version": "1.0.0"}
        assert 2 <= stored["ttl"] <= 3
        wait_for("the engine lease under /from-file/", lambda: etcd.get("/from-file/lease/engine-leader"), timeout=15)
        assert etcd.get(PREFIX + "machines") is None and etcd.get(PREFIX + "lease") is None
    finally:
        process.kill()
        process.wait(timeout=10)


# --- the engine (engine/engine.go, engine/reconciler.go, engine/scheduler.go, agent/state.go) -----------------

def test_engine_schedules_honouring_each_x_fleet_option(registry):
    registry.register(MACHINE_A, "10.0.0.1", {"role": "web"})
    registry.register(MACHINE_B, "10.0.0.2", {"role": "db"})
    registry.register(MACHINE_C, "10.0.0.3", {"role": "web"})
    registry.submit("pinned.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=%s\n" % MACHINE_C[:8],
                    "launched")
    registry.submit("db.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=db\n", "loaded")
    registry.submit("backup.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=db.service\n",
                    "launched")
    web = "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=web\nConflicts=web@*\n"
    for name in ("web@1.service", "web@2.service", "web@3.service"):
        registry.submit(name, web, "launched")
    registry.submit("agent.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n", "launched")
    registry.submit("idle.service", "[Service]\nExecStart=/bin/true\n")  # inactive: never scheduled

    leader = engine(registry, MACHINE_A)
    done = leader.tick()
    targets = registry.targets()
    assert targets["pinned.service"] == MACHINE_C  # MachineID takes the short ID too (MachineState.MatchID)
    assert targets["db.service"] == MACHINE_B  # MachineMetadata
    # MachineOf: its peer sits on B, but the engine places units in name order, so backup waits one round.
    assert targets["backup.service"] == ""
    # Conflicts: one web@ per web machine, the third waits for a machine that can take it.
    assert {targets["web@1.service"], targets["web@2.service"]} == {MACHINE_A, MACHINE_C}
    assert targets["web@3.service"] == ""
    assert targets["agent.service"] == "" and targets["idle.service"] == ""  # global / inactive
    assert sorted(done) == sorted("schedule %s %s" % (name, targets[name])
                                  for name in ("pinned.service", "db.service", "web@1.service", "web@2.service"))

    assert leader.tick() == ["schedule backup.service %s" % MACHINE_B]
    assert leader.tick() == []  # nothing left that any machine may take
    # What fleet stores: the target machine ID, created once (ScheduleUnit: prevExist=false).
    tree = registry.tree()
    assert tree["job/backup.service/target"]["value"] == MACHINE_B
    assert "job/web@3.service/target" not in tree and "job/agent.service/target" not in tree


def test_engine_balances_by_unit_count_then_machine_id(registry):
    registry.register(MACHINE_A)
    registry.register(MACHINE_B)
    for number in range(5):
        registry.submit("u%d.service" % number, "[Service]\nExecStart=/bin/sleep %d\n" % number, "launched")
    engine(registry, MACHINE_A).tick()
    # leastLoadedScheduler: fewest scheduled units first, ties to the lower machine ID (B < A here).
    assert registry.targets() == {"u0.service": MACHINE_B, "u1.service": MACHINE_A, "u2.service": MACHINE_B,
                                  "u3.service": MACHINE_A, "u4.service": MACHINE_B}


def test_engine_unschedules_inactive_units_and_reschedules_those_of_an_expired_machine(registry, capsys):
    registry.register(MACHINE_B, "10.0.0.2", ttl=1)  # registered once, never refreshed: gone within ~2s
    registry.submit("moving.service", HELLO, "launched")
    registry.submit("going.service", "[Service]\nExecStart=/bin/true\n", "loaded")
    leader = engine(registry, MACHINE_A)
    leader.tick()
    assert registry.targets() == {"going.service": MACHINE_B, "moving.service": MACHINE_B}

    registry.register(MACHINE_A, "10.0.0.1")
    registry.set_state("going.service", "inactive")
    wait_for("B's registration to expire", lambda: MACHINE_B not in registry.fleetd.machines(), timeout=10)
    done = leader.tick()
    # One round: unschedule (compare-and-delete of the target) and place again on a machine still there.
    assert done == ["unschedule going.service %s" % MACHINE_B, "unschedule moving.service %s" % MACHINE_B,
                    "schedule moving.service %s" % MACHINE_A]
    assert registry.targets() == {"going.service": "", "moving.service": MACHINE_A}
    log = capsys.readouterr().err
    assert "unscheduled going.service from machine %s: target state inactive" % MACHINE_B in log
    assert "unscheduled moving.service from machine %s: target Machine(%s) went away" % (MACHINE_B, MACHINE_B) in log


def test_engine_moves_a_unit_its_machine_may_no_longer_run(registry):
    registry.register(MACHINE_A)
    registry.register(MACHINE_B)
    registry.submit("a.service", "[Service]\nExecStart=/bin/true\n", "launched")
    registry.submit("b.service", "[Service]\nExecStart=/bin/true\n", "launched")
    leader = engine(registry, MACHINE_A)
    leader.tick()
    # Both end up on one machine (as after a machine left and came back), then b learns it conflicts with a.
    registry.fleetd.unschedule_unit("b.service", registry.targets()["b.service"])
    registry.fleetd.schedule_unit("b.service", registry.targets()["a.service"])
    shared = registry.targets()["a.service"]
    registry.submit("b.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=a.service\n", "launched")
    done = leader.tick()
    # Conflicts count both ways, and the engine checks units in name order: a.service is the one that moves.
    other = MACHINE_A if shared == MACHINE_B else MACHINE_B
    assert done == ["unschedule a.service %s" % shared, "schedule a.service %s" % other]
    assert registry.targets() == {"a.service": other, "b.service": shared}


def test_one_leader_among_engines_through_the_lease(registry, etcd):
    registry.register(MACHINE_A)
    registry.register(MACHINE_B)
    first, second = engine(registry, MACHINE_A, 0.4), engine(registry, MACHINE_B, 0.4)
    assert first.lease_ttl == 2  # 5 x the 0.4 s interval, in etcd's whole seconds

    # Both try at once, many times: exactly one leads at any moment.
    barrier = threading.Barrier(2)

    def contend(candidate):
        barrier.wait()
        for _round in range(5):
            candidate.tick()

    threads = [threading.Thread(target=contend, args=(candidate,)) for candidate in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert first.is_leader != second.is_leader
    leader, follower = (first, second) if first.is_leader else (second, first)
    lease = etcd.get(registry.prefix + "lease/engine-leader")
    # pkg/lease/etcd.go: {"MachineID", "Version"} with the lease's TTL; engine/version raised to 1 first.
    assert json.loads(lease["value"]) == {"MachineID": leader.machine_id, "Version": 1}
    assert 0 < lease["ttl"] <= 2
    assert etcd.get(registry.prefix + "engine/version")["value"] == "1"

    # Only the leader schedules.
    registry.submit("hello.service", HELLO, "launched")
    assert follower.tick() == []
    assert registry.targets() == {"hello.service": ""}
    assert leader.tick() == ["schedule hello.service %s" % MACHINE_B]  # B: the lower ID

    # A leader that stops renewing loses the lease with its TTL; the other engine then takes over.
    registry.submit("later.service", "[Service]\nExecStart=/bin/true\n", "launched")
    wait_for("the lease to expire", lambda: etcd.get(registry.prefix + "lease/engine-leader") is None, timeout=10)
    assert follower.tick() == ["schedule later.service %s" % MACHINE_A]
    assert follower.is_leader
    # The old leader finds its lease gone at its next round, and follows.
    assert leader.tick() == [] and not leader.is_leader

    # Engine.Purge releases the lease (a delete at its index), so a follower leads at once.
    follower.purge()
    assert etcd.get(registry.prefix + "lease/engine-leader") is None
    registry.submit("third.service", "[Service]\nExecStart=/bin/sleep 3\n", "launched")
    assert leader.tick() == ["schedule third.service %s" % MACHINE_B]


def test_engine_takes_up_its_own_lease_again_and_steals_from_an_older_engine(registry, etcd):
    ours = engine(registry, MACHINE_A)
    # A lease of ours it does not know about (e.g. a renewal whose answer was lost): taken up again.
    etcd.put(registry.prefix + "lease/engine-leader", json.dumps({"MachineID": MACHINE_A, "Version": 1}), ttl=5)
    ours.tick()
    assert ours.is_leader
    ours.purge()
    # An engine older than lease versions wrote its bare machine ID: engine version 0, so taken over.
    etcd.put(registry.prefix + "lease/engine-leader", MACHINE_B, ttl=1)
    thief = engine(registry, MACHINE_A, clock=lambda: 0.0)
    thief.tick()
    assert thief.is_leader and thief.not_before == 1.0  # it waits for the old lease's time to run out
    lease = json.loads(etcd.get(registry.prefix + "lease/engine-leader")["value"])
    assert lease == {"MachineID": MACHINE_A, "Version": 1}


def test_engine_stays_out_of_a_cluster_with_a_newer_engine(registry, etcd, capsys):
    etcd.put(registry.prefix + "engine/version", "2")
    newer = engine(registry, MACHINE_A)
    assert newer.tick() == [] and not newer.is_leader
    assert etcd.get(registry.prefix + "lease/engine-leader") is None
    assert "cluster engine version 2 is above this engine's 1" in capsys.readouterr().err


@pytest.mark.parametrize("unit, machine, here, able", [
    ("[X-Fleet]\nMachineID=a1b2c3d4\n", ("a1b2c3d4e5", {}), [], True),
    ("[X-Fleet]\nMachineID=zzz\n", ("a1b2c3d4e5", {}), [], False),
    ("[X-Fleet]\nMachineMetadata=role=web\nMachineMetadata=role=api\n", ("m", {"role": "api"}), [], True),
    ('[X-Fleet]\nMachineMetadata="role=web" "az=a"\n', ("m", {"role": "web", "az": "b"}), [], False),
    ('[X-Fleet]\nMachineMetadata="role=web" "az=a"\n', ("m", {"role": "web", "az": "a", "x": "y"}), [], True),
    ("[X-Fleet]\nMachineOf=db.service\n", ("m", {}), ["db.service"], True),
    ("[X-Fleet]\nMachineOf=db.service\n", ("m", {}), ["other.service"], False),
    ("[X-Fleet]\nConflicts=web@*.service\n", ("m", {}), ["web@2.service"], False),
    ("[X-Fleet]\nConflicts=%p@*.service\n", ("m", {}), ["web@2.service"], False),  # %p is the unit's prefix
    ("[X-Fleet]\nConflicts=web@[2-3].service\n", ("m", {}), ["web@4.service"], True),
    ("[Service]\nExecStart=/bin/true\n", ("m", {}), ["web@2.service"], True),
])
def test_able_to_run(unit, machine, here, able):
    def make(name: str, text: str) -> "fleetd.Unit":
        return fleetd.Unit(name, "", text, "launched", requirements=fleetd.Requirements(name, fleetd.x_fleet(text)))

    others = [make(name, "[X-Fleet]\nConflicts=nothing\n") for name in here]
    machine_id, metadata = machine
    assert fleetd.able_to_run(make("web@1.service", unit), fleetd.Machine(machine_id, "", metadata), others)[0] is able


def test_reverse_conflicts_count_too():
    def make(name: str, text: str) -> "fleetd.Unit":
        return fleetd.Unit(name, "", text, "launched", requirements=fleetd.Requirements(name, fleetd.x_fleet(text)))

    there = make("db.service", "[X-Fleet]\nConflicts=cache.service\n")
    assert not fleetd.able_to_run(make("cache.service", "[Service]\n"), fleetd.Machine("m"), [there])[0]


@pytest.mark.parametrize("text", [
    "[Service]\nExecStart=/bin/true\n",
    "[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n",
    '[X-Fleet]\nMachineMetadata="role=web" "az=a"\nConflicts=%p@*.service\nMachineOf=%i.service\n',
    "[Unit]\nDescription=x\n\n[X-Fleet]\nX-ConditionMachineID=abc\nX-Conflicts=a*\nX-ConditionMachineOf=b\n",
    "[X-Fleet]\nMachineMetadata=role=web \\\n  extra\nGlobal=True\n",
])
def test_requirements_as_the_double_reads_them(text):
    """fleetd reads the registry's serialised unit; it must find the requirements the double validated."""
    unit_file = double.UnitFile.parse(text)
    for name in ("web@7.service", "plain.service"):
        ours = fleetd.Requirements(name, fleetd.x_fleet(unit_file.serialize()))
        theirs = double.Requirements(name, unit_file)
        assert (ours.is_global(), ours.conflicts(), ours.peers(), ours.required_target(), ours.required_metadata()) \
            == (theirs.is_global(), theirs.conflicts(), theirs.peers(), theirs.required_target(),
                theirs.required_metadata())


# --- the agent (agent/reconcile.go, agent/agent.go, agent/unit_state.go, systemd/manager.go) ------------------

def test_agent_loads_starts_stops_and_unloads_a_unit_and_reports_systemds_states(registry, tmp_path):
    registry.register(MACHINE_A, "10.0.0.1")
    unit_hash = registry.submit("hello.service", HELLO, "loaded")
    registry.fleetd.schedule_unit("hello.service", MACHINE_A)
    systemd = FakeSystemctl()
    here = agent(registry, MACHINE_A, tmp_path, systemctl=systemd, ttl=10)
    units_dir = tmp_path / ("units-" + MACHINE_A[:8])

    # loaded: the unit file (the registry's serialisation), linked, daemon-reload, not started.
    assert here.tick() == ["load hello.service", "reload"]
    assert (units_dir / "hello.service").read_text() == HELLO
    assert systemd.verbs() == ["link %s" % (units_dir / "hello.service"), "daemon-reload", "show hello.service"]
    assert systemd.calls[0] == ["link", "--runtime", "--force", "--no-reload", str(units_dir / "hello.service")]
    tree = registry.tree()
    state = tree["states/hello.service/" + MACHINE_A]
    assert json.loads(state["value"]) == {"loadState": "loaded", "activeState": "inactive", "subState": "dead",
                                          "machineState": {"ID": MACHINE_A, "PublicIP": "", "Metadata": None,
                                                           "Version": ""},
                                          "unitHash": unit_hash}
    assert 0 < state["ttl"] <= 10
    assert "job/hello.service/job-state" not in tree
    assert here.tick() == []  # nothing changed, nothing done, nothing written again
    assert tree["states/hello.service/" + MACHINE_A]["modifiedIndex"] == \
        registry.tree()["states/hello.service/" + MACHINE_A]["modifiedIndex"]

    # launched: started without waiting for it; the heartbeat says who launched it.
    registry.set_state("hello.service", "launched")
    assert here.tick() == ["start hello.service"]
    assert ["start", "--no-block", "hello.service"] in systemd.calls
    tree = registry.tree()
    assert state_of(tree["states/hello.service/" + MACHINE_A]) == ("loaded", "active", "running")
    assert tree["job/hello.service/job-state"]["value"] == MACHINE_A and 0 < tree["job/hello.service/job-state"]["ttl"] <= 10
    # The double's listing shows it: what the agent reported.
    listed = registry.double("list-units", "--no-legend", "--full")
    assert listed.stdout.split() == ["hello.service", MACHINE_A + "/10.0.0.1", "active", "running"]
    files = registry.double("list-unit-files", "--no-legend", "--fields=unit,dstate,state")
    assert files.stdout.split() == ["hello.service", "launched", "launched"]

    # loaded again: stopped, heartbeat gone.
    registry.set_state("hello.service", "loaded")
    assert here.tick() == ["stop hello.service"]
    assert systemd.active("hello.service") == ("inactive", "dead")
    tree = registry.tree()
    assert state_of(tree["states/hello.service/" + MACHINE_A]) == ("loaded", "inactive", "dead")
    assert "job/hello.service/job-state" not in tree

    # inactive: the engine unschedules it, the agent stops, unlinks and removes it and withdraws its state.
    registry.set_state("hello.service", "inactive")
    registry.fleetd.unschedule_unit("hello.service", MACHINE_A)
    calls_before = len(systemd.calls)
    assert here.tick() == ["unload hello.service", "reload"]
    assert [call[0] for call in systemd.calls[calls_before:]] == ["stop", "disable", "reset-failed", "daemon-reload"]
    assert not (units_dir / "hello.service").exists()
    assert "hello.service" not in systemd.state["links"]
    assert not [key for key in registry.tree() if key.startswith("states/")]


def test_agent_reports_a_failing_unit_as_systemd_sees_it(registry, tmp_path):
    registry.register(MACHINE_A)
    registry.submit("bad.service", "[Service]\nExecStart=/bin/false\n", "launched")
    registry.fleetd.schedule_unit("bad.service", MACHINE_A)
    here = agent(registry, MACHINE_A, tmp_path)
    assert here.tick() == ["load bad.service", "reload", "start bad.service"]
    state = registry.tree()["states/bad.service/" + MACHINE_A]
    assert state_of(state) == ("loaded", "failed", "failed")
    # Still launched for fleet: the agent started it and beats for it (fleet does not restart units).
    status = registry.double("status", "bad.service")
    assert status.returncode == 3 and "Active: failed (failed)" in status.stdout


def test_agent_replaces_a_unit_whose_hash_changed(registry, tmp_path):
    registry.register(MACHINE_A)
    registry.submit("app.service", "[Service]\nExecStart=/bin/sleep 1\n", "launched")
    registry.fleetd.schedule_unit("app.service", MACHINE_A)
    systemd = FakeSystemctl()
    here = agent(registry, MACHINE_A, tmp_path, systemctl=systemd)
    here.tick()
    new_hash = registry.submit("app.service", "[Service]\nExecStart=/bin/sleep 2\n", "launched")
    assert here.tick() == ["unload app.service", "load app.service", "reload", "start app.service"]
    assert (tmp_path / ("units-" + MACHINE_A[:8]) / "app.service").read_text() == "[Service]\nExecStart=/bin/sleep 2\n"
    assert json.loads(registry.tree()["states/app.service/" + MACHINE_A]["value"])["unitHash"] == new_hash


def test_global_units_run_on_every_machine_with_their_metadata(registry, tmp_path):
    registry.register(MACHINE_A, "10.0.0.1", {"role": "web"})
    registry.register(MACHINE_B, "10.0.0.2", {"role": "db"})
    registry.register(MACHINE_C, "10.0.0.3", {"role": "web"})
    registry.submit("log.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n",
                    "launched")
    agents = {machine_id: agent(registry, machine_id, tmp_path, metadata)
              for machine_id, metadata in ((MACHINE_A, {"role": "web"}), (MACHINE_B, {"role": "db"}),
                                           (MACHINE_C, {"role": "web"}))}
    engine(registry, MACHINE_A).tick()
    assert registry.targets() == {"log.service": ""}  # the engine leaves global units alone
    done = {machine_id: here.tick() for machine_id, here in agents.items()}
    assert done == {MACHINE_A: ["load log.service", "reload", "start log.service"], MACHINE_B: [],
                    MACHINE_C: ["load log.service", "reload", "start log.service"]}
    states = {key: state_of(node) for key, node in registry.tree().items() if key.startswith("states/")}
    assert states == {"states/log.service/" + MACHINE_A: ("loaded", "active", "running"),
                      "states/log.service/" + MACHINE_C: ("loaded", "active", "running")}

    registry.set_state("log.service", "inactive")
    assert agents[MACHINE_A].tick() == ["unload log.service", "reload"]
    # Each agent withdraws its own state only; C's stays until C unloads.
    assert [key for key in registry.tree() if key.startswith("states/")] == ["states/log.service/" + MACHINE_C]


def test_a_restarted_agent_takes_over_what_it_left_in_its_units_directory(registry, tmp_path):
    registry.register(MACHINE_A)
    registry.submit("kept.service", "[Service]\nExecStart=/bin/sleep 9\n", "launched")
    registry.submit("dropped.service", "[Service]\nExecStart=/bin/sleep 8\n", "launched")
    for name in ("kept.service", "dropped.service"):
        registry.fleetd.schedule_unit(name, MACHINE_A)
    systemd = FakeSystemctl()
    agent(registry, MACHINE_A, tmp_path, systemctl=systemd).tick()
    registry.set_state("dropped.service", "inactive")
    registry.fleetd.unschedule_unit("dropped.service", MACHINE_A)
    (tmp_path / ("units-" + MACHINE_A[:8]) / "stray.txt").write_text("not a unit: left alone")

    restarted = agent(registry, MACHINE_A, tmp_path, systemctl=systemd)
    assert restarted.hashes.keys() == {"dropped.service", "kept.service"}
    # Its cache is empty: the unit it still should run is loaded and started again, the other unloaded.
    assert restarted.tick() == ["unload dropped.service", "load kept.service", "reload", "start kept.service"]
    assert (tmp_path / ("units-" + MACHINE_A[:8]) / "stray.txt").exists()


def test_heartbeats_and_states_are_refreshed_every_half_ttl(registry, tmp_path):
    registry.register(MACHINE_A)
    registry.submit("hello.service", HELLO, "launched")
    registry.fleetd.schedule_unit("hello.service", MACHINE_A)
    now = [100.0]
    here = agent(registry, MACHINE_A, tmp_path, ttl=10, clock=lambda: now[0])
    here.tick()

    def indexes() -> tuple[int, int]:
        tree = registry.tree()
        return (tree["job/hello.service/job-state"]["modifiedIndex"],
                tree["states/hello.service/" + MACHINE_A]["modifiedIndex"])

    first = indexes()
    now[0] += 4.9
    here.tick()
    assert indexes() == first
    now[0] += 0.2  # 5.1 s: past TTL/2
    here.tick()
    second = indexes()
    assert second[0] > first[0] and second[1] > first[1]


def test_purge_stops_the_units_even_when_etcd_is_gone(registry, etcd, tmp_path, capsys):
    registry.register(MACHINE_A)
    for name in ("one.service", "two.service"):
        registry.submit(name, "[Service]\nExecStart=/bin/sleep 5\n", "launched")
        registry.fleetd.schedule_unit(name, MACHINE_A)
    systemd = FakeSystemctl()
    here = agent(registry, MACHINE_A, tmp_path, systemctl=systemd)
    here.tick()
    etcd.stop()
    started = time.monotonic()
    here.purge()
    # One failed etcd request, then systemd only (fleet.service must stop within systemd's timeout).
    assert time.monotonic() - started < 4
    assert systemd.active("one.service") == systemd.active("two.service") == ("inactive", "dead")
    assert not systemd.state["links"] and not list((tmp_path / ("units-" + MACHINE_A[:8])).iterdir())
    assert capsys.readouterr().err.count("etcd not reachable") == 1


def test_systemctl_failures_are_logged_and_the_state_is_still_reported(registry, tmp_path, capsys):
    registry.register(MACHINE_A)
    registry.submit("hello.service", HELLO, "launched")
    registry.fleetd.schedule_unit("hello.service", MACHINE_A)
    systemd = FakeSystemctl()
    systemd.fail["link"] = (1, "Failed to link unit: Permission denied\n")
    here = agent(registry, MACHINE_A, tmp_path, systemctl=systemd)
    here.tick()
    assert "agent: load hello.service: systemctl link --runtime --force --no-reload" in capsys.readouterr().err
    # systemd never saw the unit: that is what the registry says.
    assert state_of(registry.tree()["states/hello.service/" + MACHINE_A])[0] == "not-found"


def test_refuses_unit_names_it_must_not_write(registry, tmp_path, capsys):
    registry.register(MACHINE_A)
    registry.submit("odd.target", "[Unit]\nDescription=x\n", "launched")
    registry.fleetd.schedule_unit("odd.target", MACHINE_A)
    assert agent(registry, MACHINE_A, tmp_path).tick() == []
    assert "not loading odd.target" in capsys.readouterr().err


def test_systemd_states_from_systemctl_show():
    answers = {("show", "--property=LoadState,ActiveState,SubState", "--", "a.service", "b.service"):
               (0, "LoadState=loaded\nActiveState=active\nSubState=running\n\n"
                   "LoadState=not-found\nActiveState=inactive\nSubState=dead\n", ""),
               ("show", "--property=LoadState,ActiveState,SubState", "--", "c.service", "d.service"):
               (0, "LoadState=loaded\n", "")}

    def run(args):
        key = tuple(args)
        if key in answers:
            return answers[key]
        return 0, "LoadState=loaded\nActiveState=failed\nSubState=failed\n", ""

    systemd = fleetd.Systemd(run)
    assert systemd.states(["a.service", "b.service"]) == {"a.service": ("loaded", "active", "running"),
                                                          "b.service": ("not-found", "inactive", "dead")}
    # An answer with the wrong number of blocks: asked again one unit at a time.
    assert systemd.states(["c.service", "d.service"]) == {"c.service": ("loaded", "failed", "failed"),
                                                          "d.service": ("loaded", "failed", "failed")}
    assert systemd.states([]) == {}


# --- fleetd's Purge at SIGTERM, and a machine that goes away ----------------------------------------------------

def test_sigterm_unloads_units_releases_the_lease_and_the_other_machine_takes_over(etcd, make_fleetd):
    prefix = new_prefix()
    fast = {"FLEET_ENGINE_RECONCILE_INTERVAL": "0.5"}
    first = make_fleetd(etcd.url, ttl="10s", prefix=prefix, machine_id=MACHINE_B, extra_env=fast)
    registry = Registry(etcd.url, prefix)
    wait_for("the first engine to lead", lambda: etcd.get(prefix + "lease/engine-leader"), timeout=15)
    registry.submit("hello.service", HELLO, "launched")
    state_key = "states/hello.service/" + MACHINE_B
    wait_for("the first machine to run hello", lambda: state_key in registry.tree(), timeout=15)
    assert first.systemd()["active"]["hello.service"] == ["active", "running"]
    assert (first.units_dir / "hello.service").exists()

    second = make_fleetd(etcd.url, ttl="10s", prefix=prefix, machine_id=MACHINE_A, extra_env=fast,
                         public_ip="10.131.0.5")
    wait_for("the second machine", lambda: MACHINE_A in registry.fleetd.machines(), timeout=15)
    assert first.terminate() == 0
    # Purge: everything of the first machine is gone at once, not one TTL (10 s) later.
    tree = registry.tree()
    assert "machines/%s/object" % MACHINE_B not in tree
    assert state_key not in tree and "job/hello.service/job-state" not in tree
    lease = etcd.get(prefix + "lease/engine-leader")
    assert lease is None or json.loads(lease["value"])["MachineID"] == MACHINE_A
    systemd = first.systemd()
    assert systemd["active"]["hello.service"] == ["inactive", "dead"] and "hello.service" not in systemd["links"]
    assert not (first.units_dir / "hello.service").exists()
    log = first.log()
    assert "agent: unloaded hello.service" in log and "engine: released the engine lease" in log

    # The second engine leads and moves the unit; its agent starts it.
    moved_at = time.monotonic()
    wait_for("hello on the second machine",
             lambda: "states/hello.service/" + MACHINE_A in registry.tree(), timeout=15)
    assert time.monotonic() - moved_at < 8, "rescheduled no sooner than the old registration's TTL"
    assert registry.targets() == {"hello.service": MACHINE_A}
    assert second.systemd()["active"]["hello.service"] == ["active", "running"]
    assert json.loads(etcd.get(prefix + "lease/engine-leader")["value"]) == {"MachineID": MACHINE_A, "Version": 1}
    assert second.terminate() == 0


# --- the command line and configuration ------------------------------------------------------------------

def test_version():
    for argv in (["--version"], ["-version"], ["version"]):
        result = subprocess.run([sys.executable, str(FLEETD), *argv], capture_output=True, text=True, timeout=30,
                                check=False)
        assert result.returncode == 0
        assert result.stdout == ("fleetd version 1.0.0 (stand-in of the coreos_ec2.cluster sandbox: machine "
                                 "registration, engine and agent over etcd's v2 keys API and systemctl; no fleet "
                                 "API)\n")


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
                    'verbosity=2\nengine_reconcile_interval="0.5"\n[other]\netcd_key_prefix="/ignored/"\n')
    (tmp_path / "machine-id").write_text("abc\n")
    args = fleetd.argument_parser().parse_args(["--config", str(conf), "--machine-id-file",
                                                str(tmp_path / "machine-id"), "-public_ip", "10.0.0.1"])
    env = {"FLEET_PUBLIC_IP": "10.0.0.2", "FLEET_METADATA": "role=env", "FLEET_AGENT_TTL": "",
           "FLEET_DISABLE_ENGINE": "true"}
    config = fleetd.build_config(args, env)
    assert (config.public_ip, config.metadata, config.agent_ttl, config.etcd_key_prefix, config.etcd_servers) == (
        "10.0.0.1", {"role": "env"}, 10, "/_coreos.com/fleet/", ("http://127.0.0.1:2379", "http://127.0.0.1:4001"))
    assert (config.engine_reconcile_interval, config.disable_engine, config.units_dir, config.systemctl) == (
        0.5, True, "/run/fleet/units", "systemctl")
    assert fleetd.read_machine_id(config.machine_id_file) == "abc"


@pytest.mark.parametrize("argv, env, message", [
    (["--config", "/nonexistent/fleet.conf"], {}, "Unable to use config file"),
    ([], {"FLEET_AGENT_TTL": "500ms"}, "under one second"),
    ([], {"FLEET_AGENT_TTL": "soon"}, "invalid duration"),
    ([], {"FLEET_ETCD_SERVERS": " , "}, "etcd_servers is empty"),
    ([], {"FLEET_ENGINE_RECONCILE_INTERVAL": "0"}, "invalid engine_reconcile_interval"),
    ([], {"FLEET_DISABLE_ENGINE": "maybe"}, "invalid boolean value"),
])
def test_bad_configuration_exits_1(tmp_path, argv, env, message):
    conf = tmp_path / "empty.conf"
    conf.write_text("")
    argv = argv if argv else ["--config", str(conf)]
    result = subprocess.run([sys.executable, str(FLEETD), *argv, "--systemctl", "/nonexistent/systemctl",
                             "--units-dir", str(tmp_path / "units")], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, **env), check=False)
    assert result.returncode == 1 and message in result.stderr


def test_disable_engine_registers_and_runs_the_agent_only(etcd, make_fleetd):
    prefix = new_prefix()
    node = make_fleetd(etcd.url, prefix=prefix, extra_env={"FLEET_DISABLE_ENGINE": "true"})
    wait_for("the registration", lambda: etcd.get(prefix + "machines/%s/object" % node.machine_id), timeout=15)
    Registry(etcd.url, prefix).submit("hello.service", HELLO, "launched")
    time.sleep(1.5)
    assert etcd.get(prefix + "lease/engine-leader") is None and etcd.get(prefix + "engine/version") is None
    assert etcd.get(prefix + "job/hello.service/target") is None
    assert "engine disabled" in node.log()


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
