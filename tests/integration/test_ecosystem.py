"""The collection as users meet it outside this checkout: the Galaxy artifact built, installed offline into a
collections path of its own and run from an unrelated directory; the dynamic inventories listing the sandbox's
clusters. Both against the session's API-only sandbox, checked with boto3.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from dataclasses import dataclass

import pytest

from support.sandbox import REGION, REPO, TAG, VENV_BIN, cluster_instances, run_playbook

pytestmark = pytest.mark.integration

AMAZON_AWS = os.path.join(REPO, ".build", "collections", "ansible_collections", "amazon", "aws")
INVENTORY = os.path.join(REPO, "playbooks", "inventory")


def run(argv: list[str], cwd: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)


# The Galaxy artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> str:
    dist = tmp_path_factory.mktemp("dist")
    build = run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), REPO],
                cwd=str(dist), env=dict(os.environ))
    assert build.returncode == 0, build.stdout
    (tarball,) = dist.glob("coreos_ec2-cluster-*.tar.gz")
    return str(tarball)


@dataclass
class Installed:
    path: str  # .../ansible_collections/coreos_ec2/cluster
    workdir: str  # an unrelated directory with no ansible.cfg
    env: dict


@pytest.fixture(scope="module")
def installed(artifact, tmp_path_factory) -> Installed:
    """The artifact installed with `ansible-galaxy collection install --offline` into a collections path of its
    own; amazon.aws (the copy tools/setup.sh made) is already installed in another path, which resolves the
    dependency offline, as an installed amazon.aws does for a user."""
    base = tmp_path_factory.mktemp("galaxy")
    deps = base / "deps" / "ansible_collections" / "amazon"
    deps.mkdir(parents=True)
    (deps / "aws").symlink_to(AMAZON_AWS)
    collections, workdir = base / "collections", base / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}  # no ansible.cfg of the checkout
    env.update({"ANSIBLE_COLLECTIONS_PATH": f"{collections}{os.pathsep}{base / 'deps'}", "ANSIBLE_HOME": str(base / "home"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PATH": VENV_BIN + os.pathsep + env.get("PATH", "")})
    install = run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "--offline", "-p",
                   str(collections), artifact], cwd=str(workdir), env=env)
    assert install.returncode == 0, install.stdout
    assert "coreos_ec2.cluster:0" in install.stdout and "amazon.aws" in install.stdout, install.stdout
    return Installed(str(collections / "ansible_collections" / "coreos_ec2" / "cluster"), str(workdir), env)


def test_artifact_holds_the_collection_and_none_of_the_harness(artifact):
    with tarfile.open(artifact) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    # Everything the collection runs or documents, as it is in the checkout (Galaxy leaves out caches itself).
    needed = {"README.md", "COPYING", "CHANGELOG.rst", "changelogs/changelog.yaml", "requirements.txt",
              "requirements-sandbox.txt", "requirements.yml", "bindep.txt", "execution-environment.yml"}
    for top in ("plugins", "roles", "playbooks", "meta", "config", "docs"):
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            needed.update(os.path.relpath(os.path.join(folder, f), REPO) for f in files if not f.endswith(".pyc"))
    assert "roles/sandbox/files/sandbox_host/host.py" in needed and "playbooks/inventory/sandbox.aws_ec2.yml" in needed
    assert sorted(needed - members) == []
    harness = ("tests/", "tools/", ".ci/", ".venv/", ".build/", ".sandbox/", ".ansible/", "changelogs/fragments/")
    assert sorted(m for m in members if m.startswith(harness)) == []
    assert sorted(members & {"Makefile", "ansible.cfg", "requirements-dev.txt", ".gitignore", ".ansible-lint"}) == []


def test_installed_artifact_finds_nothing_of_the_checkout(installed):
    # Where Ansible finds the collection: only the installed copy (not .build/collections, not this checkout).
    found = {}
    for name in ("coreos_ec2.cluster", "amazon.aws"):
        listing = run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "list", name, "--format", "json"],
                      cwd=installed.workdir, env=installed.env)
        assert listing.returncode == 0, listing.stdout
        found[name] = sorted(json.loads(listing.stdout[listing.stdout.index("{"):]))
    assert found["coreos_ec2.cluster"] == [os.path.dirname(os.path.dirname(installed.path))]
    assert len(found["amazon.aws"]) == 1 and not found["amazon.aws"][0].startswith(REPO), found
    # The sandbox's host process and emulator run from the role's files in the installed collection.
    for module in ("sandbox_host", "sandbox_host.ec2_emulator"):
        started = run([os.path.join(VENV_BIN, "python"), "-m", module, "--help"], cwd=installed.workdir,
                      env={**installed.env, "PYTHONPATH": os.path.join(installed.path, "roles", "sandbox", "files")})
        assert started.returncode == 0 and "usage:" in started.stdout, started.stdout


def installed_playbook(installed: Installed, name: str, extra_vars: dict, *args: str) -> subprocess.CompletedProcess:
    vars_file = os.path.join(installed.workdir, "vars.json")
    with open(vars_file, "w", encoding="utf-8") as f:
        json.dump(extra_vars, f)
    return run([os.path.join(VENV_BIN, "ansible-playbook"), f"coreos_ec2.cluster.{name}", "-e", "@" + vars_file, *args],
               cwd=installed.workdir, env=installed.env)


def test_installed_artifact_launches_reports_and_cleans_up(sandbox, installed):
    ec2, name = sandbox.client(), "eco-galaxy"
    cloud_config = os.path.join(installed.path, "config", "cloud-config.example")  # the example the artifact ships
    launch = installed_playbook(installed, "launch", sandbox.vars(
        cluster_name=name, cluster_size=2, instance_type="c4.large", key_name="coreos-sandbox", cloud_config=cloud_config))
    assert launch.returncode == 0, launch.stdout[-6000:]
    machines = cluster_instances(ec2, name)
    assert len(machines) == 2 and {m["State"]["Name"] for m in machines} == {"running"}
    assert {m["InstanceType"] for m in machines} == {"c4.large"}

    status = installed_playbook(installed, "ops", sandbox.vars(cluster_name=name, ops_action="status"))
    assert status.returncode == 0, status.stdout[-6000:]
    assert '"running": 2' in status.stdout, status.stdout[-3000:]  # the counts by state

    cleanup = installed_playbook(installed, "ops", sandbox.vars(cluster_name=name, ops_action="cleanup", confirm="yes"))
    assert cleanup.returncode == 0, cleanup.stdout[-6000:]
    assert cluster_instances(ec2, name) == []
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"coreos-ec2-{name}"]}])
    assert groups["SecurityGroups"] == []


# The dynamic inventories


@dataclass
class World:
    running: list[str]  # cluster eco-inv, launched by launch.yml
    stopped: str  # tagged eco-inv, stopped
    other: str  # tagged eco-other, running
    untagged: str  # running, no cluster tag


@pytest.fixture(scope="module")
def world(sandbox):
    ec2 = sandbox.client()
    launch = run_playbook("launch.yml", sandbox.vars(cluster_name="eco-inv", cluster_size=3, instance_type="c4.large",
                                                     key_name="coreos-sandbox"))
    assert launch.rc == 0, launch.out[-6000:]
    running = sorted(m["InstanceId"] for m in cluster_instances(ec2, "eco-inv"))
    image = cluster_instances(ec2, "eco-inv")[0]["ImageId"]

    def machine(tags: dict[str, str]) -> str:
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 TagSpecifications=spec)["Instances"][0]["InstanceId"]

    stopped, other, untagged = machine({TAG: "eco-inv"}), machine({TAG: "eco-other"}), machine({})
    ec2.stop_instances(InstanceIds=[stopped])
    try:
        yield World(running, stopped, other, untagged)
    finally:
        ec2.terminate_instances(InstanceIds=[*running, stopped, other, untagged])


def inventory(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}
    return run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", os.path.join(INVENTORY, name), *args],
               cwd=REPO, env=full_env, timeout=120)


def plain(value):
    """--list marks values that came from outside as {"__ansible_unsafe": value}: the values themselves."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {k: plain(v) for k, v in value.items()}
    return [plain(v) for v in value] if isinstance(value, list) else value


def listing(name: str, env: dict) -> dict:
    out = inventory(name, "--list", env=env)
    assert out.returncode == 0, out.stdout
    return plain(json.loads(out.stdout[out.stdout.index("{"):]))  # after the plugin's deprecation warning


def test_sandbox_inventory_groups_running_machines_by_cluster(sandbox, world):
    env = {"COREOS_EC2_SANDBOX_URL": sandbox.ec2_url, "COREOS_EC2_SANDBOX_DIR": sandbox.state_dir}
    graph = inventory("sandbox.aws_ec2.yml", "--graph", "cluster_eco_inv", env=env)
    assert graph.returncode == 0, graph.stdout
    assert "@cluster_eco_inv:" in graph.stdout and all(i in graph.stdout for i in world.running), graph.stdout

    inv = listing("sandbox.aws_ec2.yml", env)
    assert sorted(inv["cluster_eco_inv"]["hosts"]) == world.running  # not the stopped machine
    assert inv["cluster_eco_other"]["hosts"] == [world.other]
    hostvars = inv["_meta"]["hostvars"]
    assert world.untagged not in hostvars and world.stopped not in hostvars
    reservations = sandbox.client().describe_instances(InstanceIds=world.running)["Reservations"]
    by_id = {i["InstanceId"]: i for r in reservations for i in r["Instances"]}
    key = os.path.join(sandbox.state_dir, "coreos-sandbox")
    assert os.path.exists(key)
    for instance_id in world.running:
        v = hostvars[instance_id]
        assert (v["ansible_host"], v["ansible_user"], v["ansible_ssh_private_key_file"]) == (
            by_id[instance_id]["PrivateIpAddress"], "core", key)


def test_aws_inventory_uses_public_dns_names_or_on_request_private_ips(sandbox, world):
    # The AWS file, pointed at the sandbox the way boto3 is pointed anywhere: endpoint and credentials from the
    # environment (the plugin's AWS_URL), region from AWS_REGION.
    env = {"AWS_URL": sandbox.ec2_url, "AWS_ACCESS_KEY_ID": "sandbox-access-key",
           "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key", "AWS_REGION": REGION}
    reservations = sandbox.client().describe_instances(InstanceIds=world.running)["Reservations"]
    truth = {i["InstanceId"]: i for r in reservations for i in r["Instances"]}
    public, private = listing("aws_ec2.yml", env), listing("aws_ec2.yml", {**env, "COREOS_EC2_ADDRESS": "private"})
    for inv in (public, private):
        assert sorted(inv["cluster_eco_inv"]["hosts"]) == world.running
        assert world.untagged not in inv["_meta"]["hostvars"]
    for instance_id, instance in truth.items():
        assert instance["PublicDnsName"]
        assert public["_meta"]["hostvars"][instance_id]["ansible_host"] == instance["PublicDnsName"]
        assert private["_meta"]["hostvars"][instance_id]["ansible_host"] == instance["PrivateIpAddress"]
        assert public["_meta"]["hostvars"][instance_id]["ansible_user"] == "core"


# Spot machines and zones


def default_subnets(ec2) -> dict[str, str]:
    return {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s.get("DefaultForAz")}


def by_subnet(machines: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in machines:
        counts[m["SubnetId"]] = counts.get(m["SubnetId"], 0) + 1
    return counts


def test_spot_machines_spread_over_two_zones(sandbox):
    ec2, name = sandbox.client(), "eco-spot"
    subnets = default_subnets(ec2)
    a, b = subnets["us-east-1a"], subnets["us-east-1b"]
    launch_vars = sandbox.vars(cluster_name=name, cluster_size=3, instance_type="c4.large", key_name="coreos-sandbox",
                               subnet_ids=[a, b], market="spot", spot_max_price="0.05")
    launch = run_playbook("launch.yml", launch_vars)
    assert launch.rc == 0, launch.out[-6000:]
    machines = cluster_instances(ec2, name)
    assert by_subnet(machines) == {a: 2, b: 1}  # round-robin: a, b, a
    assert {m["InstanceLifecycle"] for m in machines} == {"spot"}
    assert {m["Placement"]["AvailabilityZone"] for m in machines} == {"us-east-1a", "us-east-1b"}
    for m in machines:  # the summary names each machine's zone and market
        assert f"{m['InstanceId']}  {m['Placement']['AvailabilityZone']}  spot" in launch.out, launch.out[-3000:]
    (template,) = ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [f"coreos-ec2-{name}"]}])["LaunchTemplates"]
    assert {t["Key"]: t["Value"] for t in template["Tags"]}[TAG] == name
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["InstanceMarketOptions"]["MarketType"] == "spot"
    assert data["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.05"

    again = run_playbook("launch.yml", launch_vars)
    assert again.rc == 0 and again.recap["changed"] == 0, again.out[-6000:]
    assert by_subnet(cluster_instances(ec2, name)) == {a: 2, b: 1}

    # scale keeps the spread (the fourth goes to b) and the market (from the launch template).
    scale = run_playbook("ops.yml", sandbox.vars(cluster_name=name, ops_action="scale", cluster_size=4))
    assert scale.rc == 0, scale.out[-6000:]
    machines = cluster_instances(ec2, name)
    assert by_subnet(machines) == {a: 2, b: 2} and {m["InstanceLifecycle"] for m in machines} == {"spot"}

    inspect = run_playbook("ops.yml", sandbox.vars(cluster_name=name, ops_action="inspect", ops_probe_ssh=False))
    assert inspect.rc == 0, inspect.out[-6000:]
    header = next(line for line in inspect.out.splitlines() if "INSTANCE" in line and "LIFECYCLE" in line)
    assert "ZONE" in header
    rows = [line for line in inspect.out.splitlines() if any(m["InstanceId"] in line for m in machines) and " spot " in line]
    assert len({r.split()[0].lstrip('"') for r in rows}) == 4, inspect.out[-4000:]

    # EC2 cannot stop one-time spot machines: refused before anything is stopped.
    stop = run_playbook("ops.yml", sandbox.vars(cluster_name=name, ops_action="stop"))
    assert stop.rc != 0 and "which EC2 cannot stop, only terminate" in stop.out, stop.out[-4000:]
    assert {m["State"]["Name"] for m in cluster_instances(ec2, name)} == {"running"}

    cleanup = run_playbook("ops.yml", sandbox.vars(cluster_name=name, ops_action="cleanup", confirm="yes"))
    assert cleanup.rc == 0, cleanup.out[-6000:]
    assert ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [f"coreos-ec2-{name}"]}])["LaunchTemplates"] == []
    assert cluster_instances(ec2, name) == []


def test_subnets_of_two_vpcs_are_refused_before_anything_exists(sandbox):
    ec2, name = sandbox.client(), "eco-vpcs"
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24", AvailabilityZone="us-east-1c")["Subnet"]["SubnetId"]
    try:
        run = run_playbook("launch.yml", sandbox.vars(
            cluster_name=name, cluster_size=2, instance_type="c4.large", key_name="coreos-sandbox",
            subnet_ids=[default_subnets(ec2)["us-east-1a"], other, "subnet-0000000f"], market="spot"))
        assert run.rc != 0
        assert "subnet_ids subnet-0000000f does not exist in us-east-1" in run.out, run.out[-4000:]
        assert "subnet_ids are in different VPCs" in run.out, run.out[-4000:]
        assert cluster_instances(ec2, name) == []
        assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"coreos-ec2-{name}"]}])[
            "SecurityGroups"] == []
        assert ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [f"coreos-ec2-{name}"]}])["LaunchTemplates"] == []
    finally:
        ec2.delete_subnet(SubnetId=other)
        ec2.delete_vpc(VpcId=vpc)
