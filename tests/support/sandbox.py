"""Drive real ansible-playbook runs against a private sandbox and look at the world with boto3.

The sandbox here is the project's own sandbox role, started on free ports with its own state directory, so a
test run never meets a sandbox a user has running on the default ports.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field

import boto3

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.dirname(sys.executable)
REGION = "us-east-1"
TAG = "coreos-ec2-cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    rc: int
    out: str

    @property
    def recap(self) -> dict[str, int]:
        m = re.search(r"localhost\s+:\s+(.*)", self.out)
        assert m, f"no play recap in output:\n{self.out[-3000:]}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def run_playbook(playbook: str, extra_vars: dict, *args: str, env: dict | None = None, timeout: int = 600) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(extra_vars, f)
    full_env = dict(os.environ)
    full_env.update({"ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                     "ANSIBLE_FORCE_COLOR": "0", "PATH": VENV_BIN + os.pathsep + full_env.get("PATH", "")})
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            [os.path.join(VENV_BIN, "ansible-playbook"), os.path.join("playbooks", playbook), "-e", "@" + f.name, *args],
            cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
        )
    finally:
        os.unlink(f.name)
    return Run(proc.returncode, proc.stdout)


@dataclass
class Sandbox:
    """A private sandbox on free ports. API only unless `nodes` (then on its own bridge and address range, so
    that it meets neither a developer's sandbox nor another test's)."""

    state_dir: str
    ec2_port: int
    etcd_port: int
    etcd_peer_port: int
    emulator_port: int = field(default_factory=free_port)
    discovery_port: int = field(default_factory=free_port)
    nodes: bool = False
    bridge: str = "ce2tst0"
    network: str = "10.132.0.0/16"
    max_nodes: int = 10

    @property
    def ec2_url(self) -> str:
        return f"http://127.0.0.1:{self.ec2_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def vars(self, **extra: object) -> dict:
        v = {"target": "sandbox", "sandbox_dir": self.state_dir, "sandbox_ec2_port": self.ec2_port,
             "sandbox_etcd_port": self.etcd_port, "sandbox_etcd_peer_port": self.etcd_peer_port,
             "sandbox_emulator_port": self.emulator_port, "sandbox_discovery_port": self.discovery_port,
             "sandbox_nodes": self.nodes, "sandbox_bridge": self.bridge, "sandbox_network": self.network,
             "sandbox_max_nodes": self.max_nodes}
        v.update(extra)
        return v

    def client(self, url: str | None = None):
        return boto3.client("ec2", endpoint_url=url or self.ec2_url, region_name=REGION,
                            aws_access_key_id="sandbox-access-key", aws_secret_access_key="sandbox-secret-key")

    def etcd_get(self, key: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/v2/keys{key}?recursive=true", timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise


def cluster_instances(client, name: str, states=("pending", "running", "stopping", "stopped")) -> list[dict]:
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{TAG}", "Values": [name]}, {"Name": "instance-state-name", "Values": list(states)}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def world(client) -> dict[str, int]:
    """Counts of everything a launch could create, to prove a failed run created nothing."""
    live = ["pending", "running", "stopping", "stopped"]
    inst = client.describe_instances(Filters=[{"Name": "instance-state-name", "Values": live}])
    return {
        "instances": sum(len(r["Instances"]) for r in inst["Reservations"]),
        "security_groups": len(client.describe_security_groups()["SecurityGroups"]),
        "volumes": len(client.describe_volumes()["Volumes"]),
    }


def user_data(client, instance_id: str) -> str:
    attr = client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attr["UserData"]["Value"]).decode()


def discovery_url_of(text: str) -> str:
    m = re.search(r'ETCD_DISCOVERY=([^"\s]+)', text) or re.search(r"discovery:\s*(\S+)", text)
    assert m, "no discovery URL in user data"
    return m.group(1)


def registry_key(discovery_url: str) -> str:
    """Where a token lives in the sandbox's etcd: the etcd v2 key of an etcd_v2 URL, or the registry directory
    the discovery.etcd.io server keeps for a public-protocol token."""
    if "/v2/keys" in discovery_url:
        return discovery_url.split("/v2/keys", 1)[1]
    return "/_etcd/registry/" + discovery_url.rstrip("/").rsplit("/", 1)[1]
