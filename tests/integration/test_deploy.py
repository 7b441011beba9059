"""Service deployment end to end: deploy.yml drives fleet_units over real SSH into test nodes.

Three systemd-nspawn nodes (tests/nodes) run sshd, an etcd member that joined through a token minted by the
discovery_token module, and the fleetctl test double, which keeps fleet's registry in that etcd cluster.
The inventory names a Python interpreter that does not exist on the nodes: fleet_units needs none there.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from support.fleet_nodes import GROUP, start_fleet_cluster
from support.sandbox import run_playbook, world

pytestmark = pytest.mark.integration

PREFIX = "/_coreos.com/fleet/"
SLEEP = "[Unit]\nDescription=sleeps\n\n[Service]\nExecStart=/bin/sleep {seconds}\n"


@pytest.fixture(scope="module")
def cluster(nodes_rootfs, tmp_path_factory):
    nodes = start_fleet_cluster(nodes_rootfs, tmp_path_factory.mktemp("deploy"))
    try:
        yield nodes
    finally:
        nodes.cleanup()


def deploy(cluster, services, *args, **extra):
    v = {"cluster_name": "fleet-nodes", "deploy_group": GROUP, "services": services}
    v.update(extra)
    return run_playbook("deploy.yml", v, "-i", cluster.inventory, *args)


def etcd(cluster, key: str = "", node: int = 1) -> dict:
    """A registry key (recursive) straight from the nodes' etcd, with the store's index."""
    url = f"http://{cluster[node].ip}:2379/v2/keys{PREFIX}{key}?recursive=true"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.loads(answer.read())
        body["index"] = int(answer.headers["X-Etcd-Index"])
    return body


def unit_files(cluster, node: int = 2) -> dict:
    out = cluster[node].ssh("fleetctl list-unit-files --full --no-legend --fields=unit,hash,dstate,state", check=True).stdout
    return {cells[0]: {"hash": cells[1], "dstate": cells[2], "state": cells[3]}
            for cells in (line.split() for line in out.splitlines() if line.strip())}


def object_indexes(cluster) -> dict:
    jobs = etcd(cluster, "job")["node"].get("nodes", [])
    return {job["key"].rsplit("/", 1)[1]: next(n["modifiedIndex"] for n in job["nodes"] if n["key"].endswith("/object"))
            for job in jobs}


def mix(web_count: int = 3, logger_seconds: int = 100, **overrides) -> list:
    services = [
        {"name": "web@.service", "content": SLEEP.format(seconds=300), "count": web_count},
        {"name": "logger.service", "content": SLEEP.format(seconds=logger_seconds)},
        {"name": "db.service", "content": SLEEP.format(seconds=200), "state": "loaded"},
    ]
    for service in services:
        service.update(overrides.get(service["name"], {}))
    return services


def test_deploy_a_mix_then_rerun_changes_nothing(cluster):
    run = deploy(cluster, mix())
    assert run.rc == 0, run.out[-4000:]
    assert run.recap["changed"] == 1 and "Deployed through " + cluster[0].name in run.out, run.out[-4000:]
    units = unit_files(cluster)
    assert {name: u["dstate"] for name, u in units.items()} == {
        "web@.service": "inactive", "web@1.service": "launched", "web@2.service": "launched",
        "web@3.service": "launched", "logger.service": "launched", "db.service": "loaded"}
    # fleet's hash, as the double computes it, for the known unit text.
    assert units["web@1.service"]["hash"] == units["web@.service"]["hash"]
    before = etcd(cluster)["index"]
    again = deploy(cluster, mix())
    assert again.rc == 0 and again.recap["changed"] == 0, again.out[-4000:]
    assert "all fleet units are as desired" in again.out
    assert etcd(cluster)["index"] == before, "the re-run wrote nothing to the registry"


def test_changing_one_unit_replaces_only_it(cluster):
    assert deploy(cluster, mix()).rc == 0
    indexes = object_indexes(cluster)
    run = deploy(cluster, mix(logger_seconds=150))
    assert run.rc == 0 and run.recap["changed"] == 1, run.out[-4000:]
    assert "submit logger.service (replaced)" in run.out
    after = object_indexes(cluster)
    assert after["logger.service"] != indexes["logger.service"]
    assert {k: v for k, v in after.items() if k != "logger.service"} == {
        k: v for k, v in indexes.items() if k != "logger.service"}
    assert unit_files(cluster)["logger.service"]["dstate"] == "launched"


def test_check_mode_and_diff_change_nothing(cluster):
    assert deploy(cluster, mix()).rc == 0
    before = etcd(cluster)["index"]
    run = deploy(cluster, mix(web_count=4, logger_seconds=99), "--check", "--diff")
    assert run.rc == 0 and run.recap["changed"] == 1, run.out[-4000:]
    assert "+ExecStart=/bin/sleep 99" in run.out and "-ExecStart=/bin/sleep 100" in run.out
    assert "Check mode, nothing was changed; planned through" in run.out
    assert "submit logger.service (replaced), web@4.service; start logger.service, web@4.service" in run.out
    assert etcd(cluster)["index"] == before


def test_scale_a_template_3_5_2(cluster):
    for count, expected in ((3, [1, 2, 3]), (5, [1, 2, 3, 4, 5]), (2, [1, 2])):
        run = deploy(cluster, mix(web_count=count))
        assert run.rc == 0, run.out[-4000:]
        web = sorted(name for name in unit_files(cluster) if name.startswith("web@") and name != "web@.service")
        assert web == [f"web@{i}.service" for i in expected]
    assert deploy(cluster, mix(web_count=2)).recap["changed"] == 0


def test_stop_and_remove(cluster):
    assert deploy(cluster, mix()).rc == 0
    run = deploy(cluster, mix(**{"logger.service": {"state": "loaded"}}))
    assert run.rc == 0 and "stop logger.service" in run.out, run.out[-4000:]
    assert unit_files(cluster)["logger.service"]["dstate"] == "loaded"
    gone = [{"name": "web@.service", "state": "absent"}, {"name": "logger.service", "state": "absent"},
            {"name": "db.service", "state": "absent"}]
    run = deploy(cluster, gone)
    assert run.rc == 0, run.out[-4000:]
    assert unit_files(cluster) == {}
    assert deploy(cluster, gone).recap["changed"] == 0


def test_a_machine_down_deploys_through_the_next(cluster):
    cluster[0].stop()
    try:
        run = deploy(cluster, mix())
        assert run.rc == 0, run.out[-4000:]
        assert f"Deployed through {cluster[1].name}" in run.out
        assert unit_files(cluster)["web@3.service"]["dstate"] == "launched"
    finally:
        cluster[0].start()


@pytest.mark.parametrize("service, message", [
    ({"name": "broken.service", "content": "[Service\nExecStart=/bin/true\n"}, "broken.service"),
    ({"name": "site.target", "content": "[Unit]\nDescription=x\n"}, "site.target"),
    ({"name": "web@.service", "content": SLEEP.format(seconds=1), "state": "launched"}, "template"),
    ({"name": "x.service", "content": SLEEP.format(seconds=1), "state": "running"}, "launched, loaded, inactive, absent"),
])
def test_bad_units_are_refused_before_anything_is_submitted(cluster, service, message):
    before = etcd(cluster)["index"]
    run = deploy(cluster, mix()[1:] + [service])
    assert run.rc != 0 and message in run.out, run.out[-4000:]
    assert etcd(cluster)["index"] == before


def test_fleetctl_missing_is_explained(cluster):
    run = deploy(cluster, mix(), deploy_fleetctl="/opt/bin/no-fleetctl")
    assert run.rc != 0 and f"fleetctl was not found on {cluster[0].name}" in run.out, run.out[-4000:]


def test_fleet_info_lists_machines_and_units(cluster, tmp_path):
    assert deploy(cluster, mix()).rc == 0
    result_file = tmp_path / "fleet.json"
    run = run_playbook("../tests/integration/playbooks/fleet_info.yml", {"result_file": str(result_file)},
                       "-i", cluster.inventory)
    assert run.rc == 0 and f"ok: [{cluster[0].name}]" in run.out, run.out[-4000:]
    fleet = json.loads(result_file.read_text())
    assert sorted(m["ip"] for m in fleet["machines"]) == sorted(n.ip for n in cluster)
    units = {u["unit"]: u for u in fleet["unit_files"]}
    assert units["web@2.service"]["dstate"] == "launched" and units["web@2.service"]["target_ip"] in {n.ip for n in cluster}
    assert len(units["web@2.service"]["hash"]) == 40
    assert {u["unit"] for u in fleet["units"]} >= {"web@1.service", "logger.service"}


def test_fleet_that_cannot_reach_etcd_is_explained(cluster):
    before = etcd(cluster)["index"]
    run = deploy(cluster, mix(), deploy_fleetctl_flags={"endpoint": "http://127.0.0.1:9", "request-timeout": 2})
    assert run.rc != 0 and "Is fleet running there and can it reach etcd?" in run.out, run.out[-4000:]
    assert "RETRYING" not in run.out
    # Right after a launch fleet may not be up yet: deploy_fleet_wait retries that answer, and only that one.
    waited = deploy(cluster, mix(), deploy_fleetctl_flags={"endpoint": "http://127.0.0.1:9", "request-timeout": 2},
                    deploy_fleet_wait=10)
    assert waited.rc != 0 and waited.out.count("FAILED - RETRYING") == 2, waited.out[-4000:]
    broken = deploy(cluster, [{"name": "broken.service", "content": "[Service\n"}], deploy_fleet_wait=10)
    assert broken.rc != 0 and "RETRYING" not in broken.out
    assert etcd(cluster)["index"] == before


def test_an_api_only_sandbox_refuses_services_before_launching(sandbox):
    """Deployment runs on the sandbox's nodes (tests/integration/test_sandbox_nodes.py); without nodes there is no
    machine to run a service, which launch says before it creates anything, and deploy says too."""
    services = [{"name": "hello.service", "content": SLEEP.format(seconds=5)}]
    ec2 = sandbox.client()
    before = world(ec2)
    run = run_playbook("launch.yml", sandbox.vars(cluster_name="dep-sb", cluster_size=1, instance_type="c4.large",
                                                  services=services))
    assert run.rc != 0 and "services cannot be deployed to cluster dep-sb: the sandbox runs API only" in run.out, run.out[-4000:]
    assert world(ec2) == before
    launched = run_playbook("launch.yml", sandbox.vars(cluster_name="dep-sb", cluster_size=1, instance_type="c4.large"))
    assert launched.rc == 0, launched.out[-4000:]
    again = run_playbook("deploy.yml", sandbox.vars(cluster_name="dep-sb", services=services))
    assert again.rc != 0 and "Cannot deploy to cluster dep-sb on the sandbox: no node behind it" in again.out, again.out[-4000:]
    unknown = run_playbook("deploy.yml", sandbox.vars(cluster_name="dep-none", services=services))
    assert unknown.rc != 0 and "No running machine carries the tag coreos-ec2-cluster=dep-none" in unknown.out
