#!/usr/bin/env python
"""From `launch.yml` to a working cluster on the sandbox's nodes: end-to-end seconds and memory per node.

On a private sandbox with nodes (its own ports, bridge and address range; the node image already built), for a
cluster of N machines (default 3) launched with config/cloud-config.example:
  1. wall seconds of `ansible-playbook playbooks/launch.yml` (whole process);
  2. seconds from the start of that run until etcd answers healthy with N members on every node
     (GET http://<node>:2379/health and /v2/members, only at addresses the host's status says a node holds),
     and until every node has its flannel subnet and /media/ebs mounted (over SSH as core);
  3. memory of each node (proportional set size of every process in its cgroup: systemd, journald, sshd,
     etcd, flanneld, fleetd, ...), once the cluster has formed;
  4. beside it, a plain boto3 RunInstances of N machines with the same user data and the same wait, whole
     process, so the launcher's own cost shows apart from the boot.
Nothing asserts on speed: the figures are for reading.

Usage: .venv/bin/python tests/bench/bench_boot.py [--size 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "roles", "sandbox", "files"))

from support.sandbox import Sandbox, cluster_instances, free_port, run_playbook, user_data  # noqa: E402
from sandbox_host import nodes  # noqa: E402

BRIDGE = "ce2bnc0"
NETWORK = "10.134.0.0/16"
TIMEOUT = 300


def host_status(sb: Sandbox) -> dict:
    return json.loads(Path(sb.state_dir, "host", "status.json").read_text())


def node_ips(sb: Sandbox, ids: list[str]) -> dict[str, str]:
    instances = host_status(sb)["instances"]
    return {i: instances[i]["ip"] for i in ids if instances.get(i, {}).get("state") == "running"}


def etcd_formed(ip: str, n: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{ip}:2379/health", timeout=1) as r:
            if json.load(r).get("health") != "true":
                return False
        with opener.open(f"http://{ip}:2379/v2/members", timeout=1) as r:
            return len(json.load(r).get("members", [])) == n
    except (OSError, ValueError):
        return False


def ready_over_ssh(sb: Sandbox, ip: str) -> bool:
    argv = ["ssh", "-F", "/dev/null", "-i", os.path.join(sb.state_dir, "coreos-sandbox"), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", f"core@{ip}",
            "grep -q FLANNEL_SUBNET /run/flannel/subnet.env && findmnt -n /media/ebs >/dev/null"]
    return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0


def wait_cluster(sb: Sandbox, ids: list[str], started: float) -> tuple[float, float]:
    """Seconds from `started` until etcd formed on every node, and until flannel and the volume are there too."""
    n = len(ids)
    etcd_at = ready_at = None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and ready_at is None:
        ips = node_ips(sb, ids)
        if len(ips) == n:
            if etcd_at is None and all(etcd_formed(ip, n) for ip in ips.values()):
                etcd_at = time.monotonic() - started
            if etcd_at is not None and all(ready_over_ssh(sb, ip) for ip in ips.values()):
                ready_at = time.monotonic() - started
        time.sleep(0.2)
    if ready_at is None or etcd_at is None:
        raise SystemExit(f"[bench] the cluster did not form within {TIMEOUT} s: {host_status(sb)['instances']}")
    return etcd_at, ready_at


def memory_per_node(sb: Sandbox, ids: list[str]) -> list[int]:
    instances = host_status(sb)["instances"]
    group = f"coreos-ec2-nodes-{BRIDGE}"
    sizes = []
    for instance_id in ids:
        pids = nodes._cgroup_pids(f"{group}/{instances[instance_id]['node']}")  # pylint: disable=protected-access
        sizes.append(sum(nodes._pss_bytes(pid) for pid in pids))  # pylint: disable=protected-access
    return sizes


def terminate(sb: Sandbox, ids: list[str]) -> None:
    sb.client().terminate_instances(InstanceIds=ids)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(i in host_status(sb)["instances"] for i in ids):
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args(argv)
    problem = nodes.host_problem()
    if problem:
        print(f"[bench] skipped: {problem}")
        return 0
    state_dir = tempfile.mkdtemp(prefix="coreos-ec2-bench-boot-")
    sb = Sandbox(state_dir, free_port(), free_port(), free_port(), nodes=True, bridge=BRIDGE, network=NETWORK)
    rows = []
    try:
        t = time.monotonic()
        started = run_playbook("sandbox.yml", sb.vars(), timeout=1200)
        print(f"[bench] sandbox with nodes started in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        if started.rc != 0 or host_status(sb)["mode"] != "nodes":
            print(started.out[-3000:], file=sys.stderr)
            return 1
        ec2 = sb.client()

        print(f"[bench] launch.yml, N={args.size}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        launch_vars = sb.vars(cluster_name="boot", cluster_size=args.size, instance_type="c4.large",
                              cloud_config=os.path.join(REPO, "config", "cloud-config.example"))
        run = run_playbook("launch.yml", launch_vars)
        launch_s = time.monotonic() - t0
        if run.rc != 0:
            print(run.out[-3000:], file=sys.stderr)
            return 1
        ids = [i["InstanceId"] for i in cluster_instances(ec2, "boot")]
        etcd_s, ready_s = wait_cluster(sb, ids, t0)
        memory = memory_per_node(sb, ids)
        rows.append(("launch.yml", launch_s, etcd_s, ready_s, memory))
        data = user_data(ec2, ids[0])
        terminate(sb, ids)

        # The same boot without the launcher: one RunInstances from a plain boto3 process, same user data.
        print("[bench] plain boto3 RunInstances", file=sys.stderr, flush=True)
        image = ec2.describe_images(Owners=["075585003325"])["Images"][0]["ImageId"]
        script = (
            "import boto3, sys\n"
            f"ec2 = boto3.client('ec2', region_name='us-east-1', endpoint_url='{sb.ec2_url}',"
            " aws_access_key_id='x', aws_secret_access_key='y')\n"
            f"r = ec2.run_instances(ImageId='{image}', MinCount={args.size}, MaxCount={args.size},"
            " InstanceType='c4.large', KeyName='coreos-sandbox', UserData=sys.stdin.read(),"
            " BlockDeviceMappings=[{'DeviceName': '/dev/sdb', 'Ebs': {'VolumeSize': 100, 'DeleteOnTermination': True}}])\n"
            "print(' '.join(i['InstanceId'] for i in r['Instances']))\n"
        )
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, text=True, check=True,
                             timeout=120)
        boto3_s = time.monotonic() - t0
        plain_ids = out.stdout.split()
        etcd_b, ready_b = wait_cluster(sb, plain_ids, t0)
        rows.append(("plain boto3 RunInstances", boto3_s, etcd_b, ready_b, memory_per_node(sb, plain_ids)))
        terminate(sb, plain_ids)
    finally:
        stopped = run_playbook("sandbox.yml", sb.vars(sandbox_state="stopped"))
        if stopped.rc == 0:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(stopped.out[-3000:], file=sys.stderr)

    print(f"Sandbox boot benchmark: N={args.size} nodes from config/cloud-config.example (seconds from the start"
          " of the run; memory is PSS per node once formed)")
    print(f"{'run':<26} {'run s':>6} {'etcd healthy s':>15} {'+ flannel, /media/ebs s':>24}   memory per node MiB")
    for name, run_s, etcd_s, ready_s, memory in rows:
        mib = ", ".join(f"{m / 2**20:.0f}" for m in memory)
        print(f"{name:<26} {run_s:>6.1f} {etcd_s:>15.1f} {ready_s:>24.1f}   {mib}")
    launch, plain = rows[0], rows[1]
    print(f"launch.yml / plain boto3 to etcd healthy: {launch[2] / plain[2]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
