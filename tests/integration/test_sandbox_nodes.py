# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox boots its machines: every running instance is a systemd-nspawn node that runs its user data.

A private sandbox with nodes (its own ports, bridge ce2tst0 and range 10.132.0.0/16, at most 4 nodes), driven
through real ansible-playbook runs and plain boto3, and checked inside the nodes over SSH as core with the
sandbox key, and in the emulator, the discovery service and the host's state directory.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.sandbox import TAG, Sandbox, cluster_instances, discovery_url_of, free_port, run_playbook, user_data
from nodes import fixtures as node_fixtures
from nodes import harness as nodes

pytestmark = [pytest.mark.integration, pytest.mark.nodes]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "cloud-config.example"
MAX_NODES = 4


@pytest.fixture(scope="module")
def node_sandbox(tmp_path_factory):
    reason = nodes.host_problem()
    if reason:
        node_fixtures._unavailable(reason)  # pylint: disable=protected-access
    sb = Sandbox(str(tmp_path_factory.mktemp("node-sandbox")), free_port(), free_port(), free_port(), nodes=True,
                 max_nodes=MAX_NODES)
    run = run_playbook("sandbox.yml", sb.vars(), timeout=1200)
    try:
        assert run.rc == 0, run.out[-4000:]
        status = host_status(sb)
        if status["mode"] != "nodes":
            node_fixtures._unavailable(f"the sandbox runs API only: {status['reason']}")  # pylint: disable=protected-access
        assert "Sandbox: every running instance boots a node on ce2tst0" in run.out
        yield sb
    finally:
        stop = run_playbook("sandbox.yml", sb.vars(sandbox_state="stopped"))
        assert stop.rc == 0, stop.out[-4000:]
        assert not Path("/sys/class/net/ce2tst0").exists(), "the sandbox's bridge outlived it"
        assert not Path(sb.state_dir, "host", "volumes").exists(), "volume files outlived the sandbox"
        assert not Path(sb.state_dir, "host", "nodes").exists(), "node disks outlived the sandbox"


def host_status(sb: Sandbox) -> dict:
    return json.loads(Path(sb.state_dir, "host", "status.json").read_text())


def wait_for(what: str, check, timeout: float = 120, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def ssh(sb: Sandbox, ip: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # Only addresses our own nodes hold: the host's status names them.
    assert any(i["ip"] == ip and i["state"] == "running" for i in host_status(sb)["instances"].values()), ip
    argv = ["ssh", "-F", "/dev/null", "-i", os.path.join(sb.state_dir, "coreos-sandbox"), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"core@{ip}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def node_of(sb: Sandbox, instance_id: str) -> dict | None:
    return host_status(sb)["instances"].get(instance_id)


def running_ips(sb: Sandbox, ec2, name: str) -> dict[str, str]:
    return {i["InstanceId"]: i["PrivateIpAddress"] for i in cluster_instances(ec2, name, states=("running",))}


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def cluster(node_sandbox):
    """A 3-machine launch of the example cloud-config, waited for with inspect's probe."""
    sb = node_sandbox
    launch_vars = sb.vars(cluster_name="nodes", cluster_size=3, instance_type="c4.large", cloud_config=str(EXAMPLE),
                          launch_ebs_volume_size=1, ssh_allowed_cidrs=["10.132.0.1/32"])
    run = run_playbook("launch.yml", launch_vars)
    assert run.rc == 0, run.out[-4000:]
    inspect = run_playbook("ops.yml", sb.vars(cluster_name="nodes", ops_action="inspect", ops_probe_wait=180))
    assert inspect.rc == 0, inspect.out[-6000:]
    ips = running_ips(sb, sb.client(), "nodes")
    assert len(ips) == 3
    return {"ips": ips, "inspect": inspect.out}


def test_a_launch_forms_a_cluster_in_the_nodes(node_sandbox, cluster):
    sb = node_sandbox
    ec2 = sb.client()
    ips = cluster["ips"]
    for instance_id, ip in ips.items():
        node = node_of(sb, instance_id)
        assert node and node["state"] == "running" and node["ip"] == ip, node
        assert ip.startswith("10.132."), ip  # the emulator's default VPC is the sandbox's range
    # etcd: three started members, each at one of the machines' addresses, that joined through the fresh token.
    members = ssh(sb, next(iter(ips.values())), "ETCDCTL_API=2 etcdctl member list")
    assert members.returncode == 0, members.stderr
    lines = members.stdout.strip().splitlines()
    assert len(lines) == 3 and all("name=" in line and "name= " not in line for line in lines), lines
    assert sorted(line.split("peerURLs=http://")[1].split(":")[0] for line in lines) == sorted(ips.values())
    token_url = discovery_url_of(user_data(ec2, next(iter(ips))))
    assert token_url.startswith(f"http://10.132.0.1:{sb.discovery_port}/"), token_url
    status, body = http_get(token_url)
    assert status == 200
    registered = [n["value"] for n in json.loads(body)["node"].get("nodes", []) if not n.get("dir")]
    assert sorted(v.split("=http://")[1].split(":")[0] for v in registered) == sorted(ips.values())
    # flannel: the network config is in etcd, and every node leased its own /24 of it.
    config = ssh(sb, next(iter(ips.values())), "ETCDCTL_API=2 etcdctl get /coreos.com/network/config")
    assert json.loads(config.stdout) == {"Network": "10.1.0.0/16"}
    subnets = set()
    for ip in ips.values():
        env = ssh(sb, ip, "cat /run/flannel/subnet.env").stdout
        subnet = dict(line.split("=", 1) for line in env.split())["FLANNEL_SUBNET"]
        assert subnet.startswith("10.1.") and subnet.endswith(".1/24"), env
        subnets.add(subnet)
        # The data volume: ext4 on /dev/xvdb (the emulator's /dev/sdb), mounted at /media/ebs.
        mount = ssh(sb, ip, "findmnt -n -o SOURCE,FSTYPE /media/ebs").stdout.split()
        assert mount == ["/dev/xvdb", "ext4"], mount
        # The base cloud-config's write_files and units are in place and active.
        base = ssh(sb, ip, "cat /etc/motd.d/cluster.conf; systemctl is-active data-dirs.service etcd-member.service"
                           " flanneld.service; test -d /media/ebs/app && echo app-dir")
        assert "belongs to a coreos_ec2.cluster cluster" in base.stdout, base.stdout
        assert base.stdout.count("active") == 3 and "app-dir" in base.stdout, base.stdout
    assert len(subnets) == 3, subnets
    # inspect reported the same, per machine.
    for label in ("etcd: cluster is healthy", "etcd members:", "FLANNEL_SUBNET=10.1.", "/media/ebs: /dev/xvdb ext4",
                  "failed units: none"):
        assert cluster["inspect"].count(label) == 3, (label, cluster["inspect"][-4000:])


def list_units(sb: Sandbox, ip: str) -> list[dict[str, str]]:
    """fleetctl list-units on a node, as rows (unit, machine, active, sub)."""
    out = ssh(sb, ip, "/opt/bin/fleetctl list-units --no-legend --full --fields=unit,machine,active,sub")
    assert out.returncode == 0, out.stderr
    return [dict(zip(("unit", "machine", "active", "sub"), line.split())) for line in out.stdout.splitlines() if line.strip()]


def test_services_run_in_the_nodes_where_fleet_schedules_them(node_sandbox, cluster):
    """The demo's services, deployed over SSH as core through fleet: fleetd's engine schedules them, its agents
    start them with systemd, and fleetctl list-units shows what systemd really runs."""
    sb = node_sandbox
    ips = cluster["ips"]
    import yaml  # the services file, as `-e @config/services.example.yml` reads it

    services = yaml.safe_load((REPO / "config" / "services.example.yml").read_text())["services"]
    for service in services:
        service["src"] = str(REPO / service["src"])
    run = run_playbook("deploy.yml", sb.vars(cluster_name="nodes", services=services, deploy_ssh_wait=60,
                                             deploy_fleet_wait=120))
    assert run.rc == 0, run.out[-4000:]
    assert "Deployed through i-" in run.out, run.out[-3000:]
    first = next(iter(ips.values()))

    def all_running():
        rows = list_units(sb, first)
        return rows if len(rows) == 6 and all((r["active"], r["sub"]) == ("active", "running") for r in rows) else None

    rows = wait_for("every unit active/running", all_running, timeout=120)
    hello = {r["unit"]: r["machine"] for r in rows if r["unit"].startswith("hello@")}
    assert sorted(hello) == ["hello@1.service", "hello@2.service", "hello@3.service"], rows
    # One per machine (X-Fleet Conflicts), each on a machine fleet chose, at its address.
    assert sorted(m.split("/")[1] for m in hello.values()) == sorted(ips.values()), rows
    assert sorted(r["machine"].split("/")[1] for r in rows if r["unit"] == "beacon.service") == sorted(ips.values())
    for unit, machine in hello.items():
        ip, port = machine.split("/")[1], 8080 + int(unit.split("@")[1].split(".")[0])
        assert ssh(sb, ip, f"systemctl is-active {unit}").stdout.strip() == "active"
        answer = ssh(sb, ip, f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; cat <&3'").stdout
        assert answer.startswith("hello from ") and unit.split(".")[0] in answer, answer
        assert ssh(sb, ip, f"test -f /run/fleet/units/{unit} && echo written").stdout.strip() == "written"
    # What fleet reports is what systemd does: a unit that fails shows failed, on the machine that ran it.
    broken = services + [{"name": "broken.service", "content": "[Service]\nExecStart=/bin/false\n"}]
    run = run_playbook("deploy.yml", sb.vars(cluster_name="nodes", services=broken))
    assert run.rc == 0, run.out[-4000:]
    failed = wait_for("broken.service failed", lambda: [r for r in list_units(sb, first)
                                                        if r["unit"] == "broken.service" and r["active"] == "failed"])
    assert failed[0]["sub"] == "failed", failed
    # Unchanged services: one listing, nothing applied.
    again = run_playbook("deploy.yml", sb.vars(cluster_name="nodes", services=broken))
    assert again.rc == 0 and again.recap["changed"] == 0, again.out[-3000:]
    gone = run_playbook("deploy.yml", sb.vars(cluster_name="nodes", services=services + [
        {"name": "broken.service", "state": "absent"}]))
    assert gone.rc == 0, gone.out[-3000:]
    wait_for("broken.service gone", lambda: not [r for r in list_units(sb, first) if r["unit"] == "broken.service"])


def test_the_dynamic_inventory_reaches_every_node(node_sandbox, cluster):
    """playbooks/inventory/sandbox.aws_ec2.yml: the cluster's group, private IPs, user core and the sandbox key."""
    import re
    import sys

    sb = node_sandbox
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "COREOS_EC2_SANDBOX_URL": sb.ec2_url, "COREOS_EC2_SANDBOX_DIR": sb.state_dir}
    run = subprocess.run([str(Path(sys.executable).parent / "ansible"), "-i", "playbooks/inventory/sandbox.aws_ec2.yml",
                          "cluster_nodes", "-m", "raw", "-a", "cat /etc/machine-id"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = dict(re.findall(r"^(i-[0-9a-f]+) \| CHANGED \| rc=0 >>\s*\n([0-9a-f]{32})", run.stdout, re.M))
    ips = running_ips(sb, sb.client(), "nodes")
    assert sorted(seen) == sorted(ips), run.stdout
    assert len(set(seen.values())) == len(seen)  # every node its own machine id
    for instance_id, ip in ips.items():
        assert ssh(sb, ip, "cat /etc/machine-id").stdout.strip() == seen[instance_id]


def test_data_survives_stop_start_and_reboot_and_goes_with_termination(node_sandbox, cluster):
    sb = node_sandbox
    ec2 = sb.client()
    instance_id, ip = sorted(cluster["ips"].items())[0]
    volume_file = Path(next(iter(node_of(sb, instance_id)["volumes"].values()))["file"])
    assert volume_file.exists() and volume_file.stat().st_size == 1024**3
    wrote = ssh(sb, ip, "echo kept-across-boots | sudo tee /media/ebs/proof >/dev/null && sync && echo ok")
    assert wrote.stdout.strip() == "ok", wrote.stderr

    stop = run_playbook("ops.yml", sb.vars(cluster_name="nodes", ops_action="stop"))
    assert stop.rc == 0, stop.out[-4000:]
    wait_for("every node powered off", lambda: all(node_of(sb, i)["state"] == "stopped" for i in cluster["ips"]))
    assert not nodes._port_open(ip, 22), "a stopped machine still answers"  # pylint: disable=protected-access
    start = run_playbook("ops.yml", sb.vars(cluster_name="nodes", ops_action="start"))
    assert start.rc == 0, start.out[-4000:]
    wait_for("every node back", lambda: all(node_of(sb, i)["state"] == "running" for i in cluster["ips"]))
    wait_for("ssh on the restarted machine", lambda: ssh(sb, ip, "true").returncode == 0, timeout=60)
    wait_for("the volume mounted again", lambda: "kept-across-boots" in ssh(sb, ip, "cat /media/ebs/proof").stdout,
             timeout=90, interval=1)
    journal = ssh(sb, ip, "journalctl -b -u format-ebs.service --no-pager").stdout
    assert "already holds a filesystem" in journal and "coreos-ebs-prepare: formatting" not in journal, journal

    leader = node_of(sb, instance_id)["leader_pid"]
    ec2.reboot_instances(InstanceIds=[instance_id])
    wait_for("the node rebooted", lambda: (node_of(sb, instance_id)["leader_pid"] or leader) != leader, timeout=60)
    wait_for("the volume after the reboot", lambda: "kept-across-boots" in ssh(sb, ip, "cat /media/ebs/proof").stdout,
             timeout=90, interval=1)

    # A changed sandbox setting restarts the host process (its nodes stop with it): the machines come back, with
    # the same disks and volumes.
    leader = node_of(sb, instance_id)["leader_pid"]
    for max_nodes in (MAX_NODES + 1, MAX_NODES):
        restarted = run_playbook("sandbox.yml", sb.vars(sandbox_max_nodes=max_nodes))
        assert restarted.rc == 0 and restarted.recap["changed"] >= 1, restarted.out[-3000:]
    wait_for("the node back after the host restarted",
             lambda: (node_of(sb, instance_id) or {}).get("leader_pid") not in (None, leader), timeout=90)
    assert host_status(sb)["max_nodes"] == MAX_NODES
    wait_for("the volume after the host restarted",
             lambda: "kept-across-boots" in ssh(sb, ip, "cat /media/ebs/proof").stdout, timeout=90, interval=1)

    terminate = run_playbook("ops.yml", sb.vars(cluster_name="nodes", ops_action="terminate", confirm="yes"))
    assert terminate.rc == 0, terminate.out[-4000:]
    wait_for("the nodes removed", lambda: not any(node_of(sb, i) for i in cluster["ips"]))
    assert not volume_file.exists(), "the volume (DeleteOnTermination) outlived its instance"
    assert not any(Path(sb.state_dir, "host", "nodes").iterdir()), "node directories outlived their instances"


FAILING_UNIT_USER_DATA = """#cloud-config
coreos:
  units:
    - name: broken.service
      command: start
      content: |
        [Service]
        Type=oneshot
        ExecStart=/bin/false
write_files:
  - path: /etc/plain-boto3
    content: "from a plain run_instances\\n"
"""


def test_plain_boto3_instance_gets_a_node_with_imdsv2_required(node_sandbox):
    sb = node_sandbox
    ec2 = sb.client()
    image = ec2.describe_images(Owners=["075585003325"])["Images"][0]["ImageId"]
    launched = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", KeyName="coreos-sandbox",
        UserData=FAILING_UNIT_USER_DATA, MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "plain"}]}],
    )["Instances"][0]
    instance_id, ip = launched["InstanceId"], launched["PrivateIpAddress"]
    wait_for("the node", lambda: (node_of(sb, instance_id) or {}).get("state") == "running", timeout=60)
    wait_for("ssh", lambda: ssh(sb, ip, "test -e /etc/plain-boto3").returncode == 0, timeout=90, interval=1)
    # IMDSv2 required: without a token 401, with one the instance's own data.
    probe = ssh(sb, ip, "curl -s -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/instance-id;"
                        " echo; t=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60'"
                        " http://169.254.169.254/latest/api/token);"
                        " curl -s -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/instance-id;"
                        " echo; curl -s -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/2009-04-04/meta-data/local-ipv4")
    assert probe.stdout.split() == ["401", instance_id, ip], probe.stdout
    # The failing unit failed; the machine booted anyway, and inspect says so.
    state = ssh(sb, ip, "systemctl is-failed broken.service; systemctl is-system-running").stdout.split()
    assert state[0] == "failed" and state[1] in ("degraded", "running", "starting"), state
    inspect = run_playbook("ops.yml", sb.vars(cluster_name="plain", ops_action="inspect"))
    assert inspect.rc == 0, inspect.out[-4000:]
    assert "failed units: broken.service" in inspect.out, inspect.out[-3000:]
    ec2.terminate_instances(InstanceIds=[instance_id])
    wait_for("the node removed", lambda: node_of(sb, instance_id) is None)


def test_instances_beyond_the_cap_stay_api_only_with_a_warning(node_sandbox):
    sb = node_sandbox
    ec2 = sb.client()
    image = ec2.describe_images(Owners=["075585003325"])["Images"][0]["ImageId"]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=MAX_NODES + 1, MaxCount=MAX_NODES + 1,
                                                      InstanceType="t3.micro")["Instances"]]
    wait_for("every instance seen", lambda: all(node_of(sb, i) for i in ids), timeout=60)

    def states_once_capped() -> list[str] | None:
        states = [node_of(sb, i)["state"] for i in ids]
        return states if states.count("running") == MAX_NODES else None

    states = wait_for("the nodes up", states_once_capped, timeout=90)
    assert states.count("api-only") == 1, states
    capped = next(i for i in ids if node_of(sb, i)["state"] == "api-only")
    assert f"sandbox_max_nodes ({MAX_NODES})" in node_of(sb, capped)["reason"]
    log = Path(sb.state_dir, "host.log").read_text()
    assert f"WARNING: {capped} stays API-only" in log
    ec2.terminate_instances(InstanceIds=ids)
    wait_for("every node removed", lambda: not any(node_of(sb, i) for i in ids), timeout=90)


def test_without_root_the_sandbox_is_api_only_and_says_why():
    """The host process run as an unprivileged user: API only, the reason in its status, the API still served."""
    import shutil  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel

    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel

    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    # Not under pytest's tmp_path: its root directory is private to root.
    tmp_path = Path(tempfile.mkdtemp(prefix="coreos-ec2-nonroot-", dir="/tmp"))
    emulator_port, front_port = free_port(), free_port()
    emulator = ThreadedMotoServer(ip_address="127.0.0.1", port=emulator_port, verbose=False)
    emulator.start()
    state = tmp_path / "host"
    state.mkdir()
    os.chown(state, 65534, 65534)
    os.chmod(tmp_path, 0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO / "roles" / "sandbox" / "files"), HOME=str(state))
    proc = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", os.path.join(REPO, ".venv", "bin", "python"),
         "-m", "sandbox_host", "--state-dir", str(state), "--listen", f"127.0.0.1:{front_port}",
         "--emulator", f"127.0.0.1:{emulator_port}", "--bridge", "ce2nr0", "--network", "10.133.0.0/16"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        status = wait_for("the host's status", lambda: (state / "status.json").exists()
                          and json.loads((state / "status.json").read_text()), timeout=30)
        wait_for("api-only", lambda: json.loads((state / "status.json").read_text())["mode"] == "api-only", timeout=30)
        status = json.loads((state / "status.json").read_text())
        assert "need root" in status["reason"], status
        sb = Sandbox(str(tmp_path), front_port, 0, 0)
        ec2 = sb.client()
        wait_for("the front", lambda: http_get(f"http://127.0.0.1:{front_port}/moto-api/")[0] == 200, timeout=30)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
        wait_for("the instance noted", lambda: launched["InstanceId"] in json.loads(
            (state / "status.json").read_text())["instances"], timeout=30)
        node = json.loads((state / "status.json").read_text())["instances"][launched["InstanceId"]]
        assert node["state"] == "api-only" and "need root" in node["reason"], node
        assert not Path("/sys/class/net/ce2nr0").exists()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
        emulator.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert "API only: sandbox nodes need root" in out, out


def test_user_data_reaches_the_node_base64_intact(node_sandbox):
    """Binary-safe user data (gzip is what large cloud-configs use) reaches the node unchanged."""
    import gzip  # pylint: disable=import-outside-toplevel

    sb = node_sandbox
    ec2 = sb.client()
    image = ec2.describe_images(Owners=["075585003325"])["Images"][0]["ImageId"]
    payload = gzip.compress(b"#cloud-config\nwrite_files:\n  - path: /etc/gzipped\n    content: zipped\n")
    launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 KeyName="coreos-sandbox", UserData=payload)["Instances"][0]
    instance_id, ip = launched["InstanceId"], launched["PrivateIpAddress"]
    wait_for("the node", lambda: (node_of(sb, instance_id) or {}).get("state") == "running", timeout=60)
    wait_for("the file from gzipped user data", lambda: ssh(sb, ip, "cat /etc/gzipped").stdout.strip() == "zipped",
             timeout=90, interval=1)
    fetched = ssh(sb, ip, "curl -s http://169.254.169.254/latest/user-data | base64 -w0").stdout.strip()
    assert base64.b64decode(fetched) == payload
    ec2.terminate_instances(InstanceIds=[instance_id])
    wait_for("the node removed", lambda: node_of(sb, instance_id) is None)
