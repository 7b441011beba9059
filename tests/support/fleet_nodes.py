"""Test nodes that act as a fleet cluster, for the deploy tests and the benchmark.

Three (or n) nodes from tests/nodes whose etcd members join through a token that the project's own
discovery_token module mints on the harness's host etcd; each node gets the fleetctl test double as
/opt/bin/fleetctl and registers itself with fleet at boot (the double's stand-in for fleetd). An inventory
file names them in the group `fleetnodes`, reached as `core` with the harness's key and a Python interpreter
path that does not exist there: nothing may need Python on a CoreOS machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from support.sandbox import REPO, VENV_BIN
from nodes import harness as nodes_harness
from nodes.double import NODE_PATH, fleetctl_script

GROUP = "fleetnodes"
REGISTER_UNIT = """[Unit]
Description=Register this machine with fleet (the test double's stand-in for fleetd)
Wants=etcd.service
After=etcd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={fleetctl} register-machine --ip {ip} --metadata node={name}
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def mint_token(etcd_url: str, size: int) -> str:
    """A discovery URL from the discovery_token module (etcd v2 keys API on the host etcd)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [os.path.join(VENV_BIN, "ansible"), "localhost", "-m", "coreos_ec2.cluster.discovery_token",
         "-a", json.dumps({"protocol": "etcd_v2", "service": etcd_url, "size": size})],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise nodes_harness.NodesError("discovery_token failed: " + done.stdout[-3000:] + done.stderr[-2000:])
    # Ad-hoc output: "localhost | CHANGED => {...}".
    return json.loads(done.stdout[done.stdout.index("{"):])["discovery_url"]


def start_fleet_cluster(rootfs: Path, work_dir: Path, n: int = 3) -> nodes_harness.Cluster:
    """Boot the nodes and wait until etcd is healthy and every machine is registered with fleet.

    The cluster's `inventory` attribute is the inventory file's path. The caller calls cleanup().
    """
    nodes = nodes_harness.Cluster(
        n, rootfs=rootfs, log=print,
        discovery_url=lambda c: mint_token(c.start_host_etcd().client_url, n),
        extra_files={NODE_PATH: (fleetctl_script(), 0o755)},
        node_files=lambda name, ip: {"/etc/systemd/system/fleet-register.service":
                                     REGISTER_UNIT.format(fleetctl=NODE_PATH, ip=ip, name=name)},
        enable_units=["fleet-register.service"],
    )
    try:
        nodes.start()
        nodes.wait_ready()
        for node in nodes:
            state = node.ssh("systemctl is-active fleet-register.service", timeout=30).stdout.strip()
            if state != "active":
                raise nodes_harness.NodesError(f"{node.name}: fleet registration is {state}: {node.journal('fleet-register')}")
        inventory = Path(work_dir) / "inventory.ini"
        inventory.write_text(f"[{GROUP}]\n" + "".join(f"{node.name} ansible_host={node.ip}\n" for node in nodes) + (
            f"[{GROUP}:vars]\nansible_user=core\n"
            f"ansible_ssh_private_key_file={nodes[0].private_key_path}\n"
            "ansible_python_interpreter=/nonexistent/bin/python3\n"
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5'\n"))
        nodes.inventory = str(inventory)
        return nodes
    except BaseException:
        nodes.cleanup()
        raise
