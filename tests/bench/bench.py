#!/usr/bin/env python
"""How long a launch and the operations take and how many EC2 API calls they make, next to the least they need.

For each cluster size N (default 3 and 100) on a private sandbox (moto as EC2, a real etcd as discovery):
  1. `ansible-playbook playbooks/launch.yml` with target=aws and aws_endpoint_url pointing at a counting proxy
     in front of the emulator: the code path a real AWS account takes, not the sandbox shortcut;
  2. the same playbook again with the same vars: the idempotent re-run, which must change nothing;
  3. a minimal plain-boto3 launch of the same cluster in this process through a proxy of the same kind:
     key pair, newest Flatcar AMI, security group with the same rules, one etcd v2 token, RunInstances with
     Min=Max=N, one DescribeInstances loop until everything runs;
  4. `ansible-playbook playbooks/ops.yml -e ops_action=status` on the Ansible cluster, and a plain-boto3 status (one
     DescribeInstances by tag) on the boto3 cluster;
  5. `ops.yml -e ops_action=cleanup -e confirm=yes` on the Ansible cluster, and a plain-boto3 cleanup of the boto3
     cluster: DescribeInstances by tag, TerminateInstances, a DescribeInstances loop until all are terminated,
     DeleteSecurityGroup (retried while AWS reports DependencyViolation), and a DELETE of the etcd token.
It prints wall-clock seconds, EC2 calls (total and the commonest actions) and the ansible/boto3 ratios.
Nothing here asserts on speed: the figures are for reading. The emulator answers in microseconds and has no
throttling, so on AWS both sides get slower and the call count matters more than the seconds.

Usage: .venv/bin/python tests/bench/bench.py [--sizes 3,100] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))

import boto3  # noqa: E402

from support.ec2_proxy import EC2Proxy  # noqa: E402
from support.sandbox import REGION, TAG, Sandbox, cluster_instances, free_port, run_playbook  # noqa: E402

KEY_NAME = "coreos-sandbox"
INSTANCE_TYPE = "c4.large"
SSH_CIDR = "203.0.113.0/24"
CLOUD_CONFIG = os.path.join(REPO, "config", "cloud-config.example")
FLATCAR_OWNER = "075585003325"
# A run longer than this is worth telling about; the hard limit only keeps a hung run from hanging the bench.
SLOW_RUN_SECONDS = 600
RUN_TIMEOUT_SECONDS = 3600
WAIT_TIMEOUT_SECONDS = 600
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox-access-key", "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key"}
TOP_ACTIONS = 6
RUN_ORDER = ("ansible launch", "ansible re-run", "boto3 launch", "ansible status", "boto3 status",
             "ansible cleanup", "boto3 cleanup")
RATIOS = (("ansible launch", "boto3 launch"), ("ansible re-run", "boto3 launch"),
          ("ansible status", "boto3 status"), ("ansible cleanup", "boto3 cleanup"))


@dataclass
class Measure:
    n: int
    run: str
    cluster: str
    ok: bool = False
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    changed: int | None = None
    machines_running: int | None = None
    error: str = ""

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def top(self, k: int = TOP_ACTIONS) -> str:
        common = collections.Counter(self.calls).most_common(k)
        return ", ".join(f"{action} {count}" for action, count in common)


# ---------------------------------------------------------------------------------------------------------------
# The Ansible side


def launch_vars(sb: Sandbox, proxy: EC2Proxy, name: str, n: int) -> dict:
    # The same variables as tests/integration/test_launch_errors.py `_aws_through_proxy`; cloud_config is given
    # absolute because the role resolves a relative one against $PWD, which `make -C` would not set.
    return sb.vars(cluster_name=name, cluster_size=n, instance_type=INSTANCE_TYPE, key_name=KEY_NAME,
                   cloud_config=CLOUD_CONFIG, ssh_allowed_cidrs=[SSH_CIDR], target="aws",
                   aws_endpoint_url=proxy.url, discovery_protocol="etcd_v2", discovery_service=sb.etcd_url)


def failure_excerpt(out: str) -> str:
    """The first failed task and its message, short enough for a table footnote."""
    task = "?"
    for line in out.splitlines():
        heading = re.match(r"TASK \[(.*)\]", line)
        if heading:
            task = heading.group(1)
        if "fatal:" in line or "FAILED!" in line:
            msg = re.search(r'"msg":\s*"((?:[^"\\]|\\.)*)"', line)
            # no_log tasks (the discovery token, the machines) hide their message; the task name still says where.
            text = msg.group(1) if msg else ("output hidden by no_log" if "censored" in line else line.strip())
            return f"task '{task}': {text}"[:400]
    tail = [line for line in out.splitlines() if line.strip()][-3:]
    return " | ".join(tail)[:400]


def running_machines(sb: Sandbox, name: str) -> int:
    # Straight to the emulator, not through a counting proxy: the check must not add to anyone's calls.
    return len(cluster_instances(sb.client(), name, states=("running",)))


def ops_vars(sb: Sandbox, proxy: EC2Proxy, name: str, action: str) -> dict:
    return sb.vars(cluster_name=name, ops_action=action, confirm="yes", target="aws", aws_endpoint_url=proxy.url)


def ansible_run(sb: Sandbox, proxy: EC2Proxy, playbook: str, extra_vars: dict, n: int, label: str) -> Measure:
    name = extra_vars["cluster_name"]
    m = Measure(n=n, run=label, cluster=name)
    proxy.reset_counts()
    start = time.monotonic()
    try:
        run = run_playbook(playbook, extra_vars, env=CREDENTIALS, timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        m.seconds = time.monotonic() - start
        m.calls = proxy.counts()
        m.error = f"ansible-playbook did not finish within {RUN_TIMEOUT_SECONDS} s"
        return m
    m.seconds = time.monotonic() - start
    m.calls = proxy.counts()
    m.ok = run.rc == 0
    try:
        m.changed = run.recap.get("changed")
    except AssertionError:  # no play recap: the run died before the play ended
        m.changed = None
    if not m.ok:
        m.error = f"rc={run.rc}: {failure_excerpt(run.out)}"
    m.machines_running = running_machines(sb, name)
    return m


# ---------------------------------------------------------------------------------------------------------------
# The plain-boto3 side: the fewest calls a launch of the same cluster needs


def cloud_config(discovery_url: str, name: str) -> str:
    return f"""#cloud-config
coreos:
  etcd2:
    discovery: {discovery_url}
    advertise-client-urls: http://$private_ipv4:2379
    initial-advertise-peer-urls: http://$private_ipv4:2380
    listen-client-urls: http://0.0.0.0:2379
    listen-peer-urls: http://$private_ipv4:2380
  fleet:
    metadata: cluster={name},region={REGION},instance_type={INSTANCE_TYPE}
  units:
    - name: etcd2.service
      command: start
    - name: fleet.service
      command: start
    - name: media-ebs.mount
      command: start
      content: |
        [Mount]
        What=/dev/xvdb
        Where=/media/ebs
        Type=ext4
"""


def mint_v2_token(etcd_url: str, n: int) -> str:
    token_dir = f"{etcd_url}/v2/keys/_etcd/registry/{uuid.uuid4().hex}"
    form = urllib.parse.urlencode({"value": str(n)}).encode()
    req = urllib.request.Request(f"{token_dir}/_config/size", data=form, method="PUT",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
    return token_dir


def boto3_client(url: str):
    return boto3.client("ec2", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def boto3_measure(sb: Sandbox, label: str, name: str, n: int, work) -> Measure:
    """Time `work(ec2)` with a client behind its own counting proxy; a failure is reported, not raised."""
    m = Measure(n=n, run=label, cluster=name)
    with EC2Proxy(sb.ec2_url) as proxy:
        start = time.monotonic()
        try:
            work(boto3_client(proxy.url))
            m.ok = True
        except Exception as exc:  # a benchmark reports a failed run rather than dying half way
            m.error = f"{type(exc).__name__}: {exc}"[:400]
        m.seconds = time.monotonic() - start
        m.calls = proxy.counts()
    m.machines_running = running_machines(sb, name)
    return m


def wait_for(ec2, ids: list[str], state: str) -> None:
    """One DescribeInstances per second until every machine in `ids` is in `state`."""
    deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
    while True:
        pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
        states = [i["State"]["Name"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
        if len(states) == len(ids) and set(states) == {state}:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {len(ids)} machines {state} after {WAIT_TIMEOUT_SECONDS} s")
        time.sleep(1)


def tagged_instances(ec2, name: str) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{TAG}", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def boto3_launch(sb: Sandbox, name: str, n: int) -> tuple[Measure, str]:
    tags = [{"Key": "Name", "Value": name}, {"Key": TAG, "Value": name}, {"Key": "managed-by", "Value": "coreos_ec2.cluster"}]
    token: list[str] = []

    def launch(ec2) -> None:
        if len(ec2.describe_key_pairs(KeyNames=[KEY_NAME])["KeyPairs"]) != 1:
            raise RuntimeError(f"key pair {KEY_NAME} not found")
        images = ec2.describe_images(Owners=[FLATCAR_OWNER], Filters=[
            {"Name": "name", "Values": ["Flatcar-stable-*"]},
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "virtualization-type", "Values": ["hvm"]},
            {"Name": "state", "Values": ["available"]},
        ])["Images"]
        image = max(images, key=lambda i: i["CreationDate"])
        group = ec2.create_security_group(
            GroupName=f"coreos-ec2-{name}", Description=f"CoreOS cluster {name} (boto3 benchmark)",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
        own = [{"GroupId": group}]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": SSH_CIDR, "Description": "SSH"}]},
            {"IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380, "UserIdGroupPairs": own},
            {"IpProtocol": "tcp", "FromPort": 4001, "ToPort": 4001, "UserIdGroupPairs": own},
            {"IpProtocol": "tcp", "FromPort": 7001, "ToPort": 7001, "UserIdGroupPairs": own},
            {"IpProtocol": "udp", "FromPort": 8285, "ToPort": 8285, "UserIdGroupPairs": own},
            {"IpProtocol": "udp", "FromPort": 8472, "ToPort": 8472, "UserIdGroupPairs": own},
        ])
        token.append(mint_v2_token(sb.etcd_url, n))
        reservation = ec2.run_instances(
            ImageId=image["ImageId"], InstanceType=INSTANCE_TYPE, KeyName=KEY_NAME, MinCount=n, MaxCount=n,
            SecurityGroupIds=[group], UserData=cloud_config(token[0], name),
            BlockDeviceMappings=[{"DeviceName": "/dev/sdb", "Ebs": {
                "VolumeSize": 100, "VolumeType": "gp2", "Encrypted": True, "DeleteOnTermination": True}}],
            MetadataOptions={"HttpEndpoint": "enabled", "HttpTokens": "required"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        )
        wait_for(ec2, [i["InstanceId"] for i in reservation["Instances"]], "running")

    m = boto3_measure(sb, "boto3 launch", name, n, launch)
    return m, (token[0] if token else "")


def boto3_status(sb: Sandbox, name: str, n: int) -> Measure:
    def status(ec2) -> None:
        states = collections.Counter(i["State"]["Name"] for i in tagged_instances(ec2, name))
        if sum(states.values()) != n:
            raise RuntimeError(f"expected {n} machines, found {dict(states)}")

    return boto3_measure(sb, "boto3 status", name, n, status)


def boto3_cleanup(sb: Sandbox, name: str, n: int, token_dir: str) -> Measure:
    def cleanup(ec2) -> None:
        ids = [i["InstanceId"] for i in tagged_instances(ec2, name)]
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            wait_for(ec2, ids, "terminated")
        groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"coreos-ec2-{name}"]}])
        for group in groups["SecurityGroups"]:
            for attempt in range(30):
                try:
                    ec2.delete_security_group(GroupId=group["GroupId"])
                    break
                except ec2.exceptions.ClientError as exc:
                    if exc.response["Error"]["Code"] != "DependencyViolation":
                        raise
                    time.sleep(min(5, 1 + attempt))  # back off a little, then every 5 s
        req = urllib.request.Request(f"{token_dir}?dir=true&recursive=true", method="DELETE")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    return boto3_measure(sb, "boto3 cleanup", name, n, cleanup)


# ---------------------------------------------------------------------------------------------------------------
# Running and reporting


def bench_size(sb: Sandbox, index: int, n: int) -> list[Measure]:
    name = f"bench{index}-n{n}"
    results = []

    def note(m: Measure) -> Measure:
        print(f"[bench] N={n}: {m.run} {m.seconds:.1f} s, {m.total_calls} calls", file=sys.stderr, flush=True)
        results.append(m)
        return m

    with EC2Proxy(sb.ec2_url) as proxy:
        print(f"[bench] N={n}: ansible launch of {name} ...", file=sys.stderr, flush=True)
        first = note(ansible_run(sb, proxy, "launch.yml", launch_vars(sb, proxy, name, n), n, "ansible launch"))
        if first.ok:
            again = ansible_run(sb, proxy, "launch.yml", launch_vars(sb, proxy, name, n), n, "ansible re-run")
            if again.ok and again.changed:
                again.error = f"not idempotent: the re-run reported changed={again.changed}"
            note(again)
        launched, token_dir = boto3_launch(sb, f"{name}-boto3", n)
        note(launched)
        if first.ok:
            status = ansible_run(sb, proxy, "ops.yml", ops_vars(sb, proxy, name, "status"), n, "ansible status")
            if status.ok and status.changed:
                status.error = f"status changed something: changed={status.changed}"
            note(status)
        if launched.ok:
            note(boto3_status(sb, f"{name}-boto3", n))
        if first.ok:
            cleanup = note(ansible_run(sb, proxy, "ops.yml", ops_vars(sb, proxy, name, "cleanup"), n, "ansible cleanup"))
            if cleanup.ok and cleanup.machines_running:
                cleanup.error = f"{cleanup.machines_running} machines still running after cleanup"
        if launched.ok:
            note(boto3_cleanup(sb, f"{name}-boto3", n, token_dir))
    return results


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def table(results: list[Measure]) -> str:
    head = f"{'N':>4}  {'run':<26} {'result':<7} {'wall s':>8} {'EC2 calls':>9} {'changed':>7} {'running':>7}  top actions"
    lines = [head, "-" * len(head)]
    notes = []
    by_n: dict[tuple[int, str], Measure] = {}
    order: list[int] = []
    for m in results:
        if m.n not in order:
            order.append(m.n)
        by_n[(m.n, m.run)] = m
    for n in order:
        for label in RUN_ORDER:
            m = by_n.get((n, label))
            if m is None:
                continue
            result = "ok" if m.ok and not m.error else ("FAILED" if not m.ok else "WARN")
            changed = "-" if m.changed is None else str(m.changed)
            running = "-" if m.machines_running is None else str(m.machines_running)
            lines.append(f"{n:>4}  {m.run:<26} {result:<7} {m.seconds:>8.2f} {m.total_calls:>9} {changed:>7} {running:>7}  {m.top()}")
            if m.error:
                notes.append(f"N={n} {m.run}: {m.error}")
            if m.seconds > SLOW_RUN_SECONDS:
                notes.append(f"N={n} {m.run}: took {m.seconds:.0f} s, over {SLOW_RUN_SECONDS // 60} minutes")
        for label, base_label in RATIOS:
            m, base = by_n.get((n, label)), by_n.get((n, base_label))
            if m and base and m.ok and base.ok:
                lines.append(f"{n:>4}  {'ratio ' + label.split()[1] + '/boto3':<26} {'':<7} "
                             f"{ratio(m.seconds, base.seconds):>8} {ratio(m.total_calls, base.total_calls):>9}")
        lines.append("")
    if notes:
        lines.append("Notes:")
        lines.extend(f"  - {note}" for note in notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,100", help="comma-separated cluster sizes (default: 3,100)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs at least one size, each 1 or more")

    bench_start = time.monotonic()
    state_dir = tempfile.mkdtemp(prefix="coreos-ec2-bench-")
    sb = Sandbox(state_dir, free_port(), free_port(), free_port())
    results: list[Measure] = []
    sandbox_seconds = 0.0
    try:
        print(f"[bench] starting the sandbox (EC2 :{sb.ec2_port}, etcd :{sb.etcd_port}, state {state_dir})",
              file=sys.stderr, flush=True)
        t = time.monotonic()
        started = run_playbook("sandbox.yml", sb.vars())
        sandbox_seconds = time.monotonic() - t
        if started.rc != 0:
            print(started.out[-4000:], file=sys.stderr)
            print("[bench] the sandbox did not start", file=sys.stderr)
            return 1
        for index, n in enumerate(sizes, 1):
            results.extend(bench_size(sb, index, n))
    finally:
        stopped = run_playbook("sandbox.yml", sb.vars(sandbox_state="stopped"))
        if stopped.rc != 0:
            print(stopped.out[-4000:], file=sys.stderr)
            print(f"[bench] stopping the sandbox failed; its state is in {state_dir}", file=sys.stderr)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    total = time.monotonic() - bench_start

    print(f"coreos_ec2.cluster launch and operations benchmark: sandbox (moto + etcd v2) through a counting EC2 proxy, "
          f"instance type {INSTANCE_TYPE}")
    print(table(results))
    print(f"Sandbox start {sandbox_seconds:.1f} s; total benchmark time {total:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": sizes, "sandbox_start_seconds": round(sandbox_seconds, 3),
                       "total_seconds": round(total, 3),
                       "runs": [dict(asdict(m), seconds=round(m.seconds, 3), total_calls=m.total_calls) for m in results]}, f, indent=2)
    return 0 if results and all(m.ok and not m.error for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
