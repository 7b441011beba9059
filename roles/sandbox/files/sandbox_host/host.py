# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox host: a local machine behind every instance the EC2 emulator says is running.

    python -m sandbox_host --state-dir DIR --listen 127.0.0.1:5000 --emulator 127.0.0.1:5010 \
        --network 10.131.0.0/16 [--bridge ce2sbx0] [--max-nodes 10] [--overlay DIR] [--no-nodes]

It serves the sandbox's EC2 endpoint (ApiFront, passing every call through to the emulator) and keeps one
systemd-nspawn node per instance in step with the emulator, whoever changed it:

    pending/running      -> the node boots (its volumes attached as /dev/xvdX), at the instance's private IP
    stopping/stopped     -> clean poweroff; the node's disk and volumes stay
    RebootInstances      -> poweroff and boot again
    shutting-down/terminated, or gone from the emulator -> node removed, volumes deleted on termination
    the node powers itself off -> the instance is stopped, as an instance-initiated shutdown does on EC2

Each node reaches 169.254.169.254 (the metadata service, answering for that node's instance only), the other
nodes and the host's bridge address (where the sandbox's discovery service listens); nothing is forwarded
beyond the bridge. Where nodes cannot run (not root, no systemd-nspawn, no loop devices, the address range
overlapping the host's networks), the host runs API-only: the front still serves, no node boots, and
status.json says why.

State directory: status.json (mode, reason, bridge, every instance's node), volumes/<vol-id>.img, nodes/<name>/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sandbox_host import ec2, imds, nodes, volumes

METADATA_IP = "169.254.169.254"
IMAGE_TREE = Path(__file__).resolve().parent.parent / "node-image"
# Units of the node image every sandbox node enables: the metadata-driven cloudinit, and the udev
# stand-in that gives volumes their /dev/disk/by-label links.
NODE_UNITS = ("oem-cloudinit.service", "sandbox-udev-trigger.service")
DEFAULT_NETWORK = "10.131.0.0/16"
DEFAULT_BRIDGE = "ce2sbx0"


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sandbox-host: {message}", flush=True)


# ------------------------------------------------------------------------------------ pure helpers


def node_name(instance_id: str) -> str:
    """A node name (hostname-safe, at most 12 characters, as veth names allow) for an instance id."""
    digits = re.sub(r"[^0-9a-f]", "", instance_id.lower().removeprefix("i-"))
    return "i" + digits[-11:] if digits else "i" + str(abs(hash(instance_id)) % 10**11)


def short_hostname(private_dns: str, ip: str) -> str:
    """The hostname EC2 gives a machine: ip-10-131-0-4 (the first label of its private DNS name)."""
    label = private_dns.split(".", 1)[0] if private_dns else ""
    return label if re.fullmatch(r"[a-z0-9-]{1,63}", label or "") else "ip-" + ip.replace(".", "-")


def network_problem(network: str, host_networks: Iterable[str]) -> str | None:
    """Why `network` cannot be the sandbox's address range, or None."""
    try:
        net = ipaddress.ip_network(network)
    except ValueError as exc:
        return f"sandbox_network {network!r} is not a network in CIDR notation: {exc}"
    if (net.version != 4 or not net.is_private or net.is_loopback or net.is_link_local or net.prefixlen < 16
            or net.prefixlen > 24):
        return f"sandbox_network {network} must be a private IPv4 range from /16 to /24 (an EC2 VPC's sizes)"
    for other in host_networks:
        try:
            theirs = ipaddress.ip_network(other, strict=False)
        except ValueError:
            continue
        if theirs.version == 4 and theirs.prefixlen > 0 and net.overlaps(theirs):
            return (f"sandbox_network {network} overlaps this host's network {theirs}; choose another range "
                    "with -e sandbox_network=CIDR")
    return None


def host_networks(exclude_link: str | None = None) -> list[str]:
    """The IPv4 networks this host has addresses in or routes to (not its default route)."""
    found: list[str] = []
    for argv in (["ip", "-j", "-4", "addr", "show"], ["ip", "-j", "-4", "route", "show", "table", "all"]):
        try:
            data = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
        for entry in data:
            if exclude_link and entry.get("ifname", entry.get("dev")) == exclude_link:
                continue
            for info in entry.get("addr_info", []):
                if info.get("family") == "inet":
                    found.append(f"{info['local']}/{info.get('prefixlen', 32)}")
            dst = entry.get("dst")
            if dst and dst not in ("default", "0.0.0.0/0") and entry.get("type", "unicast") == "unicast":
                found.append(dst if "/" in dst else f"{dst}/32")
    return [n for n in found if not n.startswith("127.")]


def image_files(tree: Path) -> dict[str, tuple[bytes, int]]:
    """The node image tree as files for a node: X.py becomes the executable X run by the node's python3
    (the repository keeps no interpreter lines); other files keep their executable bit."""
    files: dict[str, tuple[bytes, int]] = {}
    if not tree.is_dir():
        return files
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = "/" + str(path.relative_to(tree))
        if rel.endswith(".py"):
            files[rel[:-3]] = (b"#!/usr/bin/python3\n" + path.read_bytes(), 0o755)
        else:
            files[rel] = (path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
    return files


def overlay_files(tree: Path) -> dict[str, tuple[bytes, int]]:
    """A user's overlay directory, copied as it is (modes kept), over the image."""
    files: dict[str, tuple[bytes, int]] = {}
    for path in sorted(p for p in Path(tree).rglob("*") if p.is_file()):
        files["/" + str(path.relative_to(tree))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return files


def host_firewall(bridge: str, allowed_ports: Iterable[int]) -> str:
    """The host-side rules for the bridge: nodes reach the host only at the sandbox's own services (metadata,
    discovery) and nothing beyond the bridge, even on a host that forwards (Docker hosts do)."""
    ports = ", ".join(str(p) for p in sorted(set(allowed_ports)))
    return (
        f"table inet {firewall_table(bridge)} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f'    iifname "{bridge}" ct state established,related accept\n'
        f'    iifname "{bridge}" icmp type echo-request accept\n'
        + (f'    iifname "{bridge}" tcp dport {{ {ports} }} accept\n' if ports else "")
        + f'    iifname "{bridge}" drop\n'
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    iifname "{bridge}" oifname != "{bridge}" drop\n'
        f'    oifname "{bridge}" iifname != "{bridge}" drop\n'
        "  }\n"
        "}\n"
    )


def firewall_table(bridge: str) -> str:
    return f"coreos_sandbox_{bridge.replace('-', '_').replace('.', '_')}"


def nft_rules(host_ip: str, port: int) -> str:
    """The node-side rule that sends its metadata requests to the host's server (the node sees the
    metadata address; the server sees the node's own address and answers for its instance only)."""
    return (
        "table ip coreos_sandbox {\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {METADATA_IP} tcp dport 80 dnat to {host_ip}:{port}\n"
        "  }\n"
        "}\n"
    )


# ------------------------------------------------------------------------------------ the host


@dataclass
class Slot:
    """One instance's node and what the host knows about it."""

    instance_id: str
    region: str
    name: str
    ip: str | None
    state: str = "new"  # new, booting, running, stopping, stopped, failed, api-only, terminated
    reason: str = ""
    node: nodes.Node | None = None
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_data: bytes | None = None
    public_key: str | None = None
    busy: bool = False
    reboot: bool = False
    boot_seconds: float | None = None
    launched_at: float = 0.0


class Host:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.state_dir = Path(args.state_dir).resolve()
        self.volume_dir = self.state_dir / "volumes"
        self.nodes_dir = self.state_dir / "nodes"
        self.status_path = self.state_dir / "status.json"
        self.network = ipaddress.ip_network(args.network)
        self.host_ip = str(self.network.network_address + 1)  # EC2's VPC router address: never an instance's
        self.reader = ec2.EmulatorReader(f"http://{args.emulator}")
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.slots: dict[str, Slot] = {}
        self.instances: dict[str, ec2.Instance] = {}
        self.regions: set[str] = set(args.region or [])
        self.swept = False
        self.mode = "starting"
        self.reason = ""
        self.image = "none"
        self.rootfs: Path | None = None
        self.bridge: nodes.Bridge | None = None
        self.bridge_lock: nodes.BridgeLock | None = None
        self.metadata: imds.MetadataService | None = None
        self.metadata_server: Any = None
        self.metadata_port = 0
        self.front: ec2.ApiFront | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, args.workers), thread_name_prefix="node")
        self.group = f"coreos-ec2-nodes-{args.bridge}"
        self.image_files = image_files(Path(args.image_tree))
        self.overlay = overlay_files(Path(args.overlay)) if args.overlay else {}

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError, ValueError):
            self.regions |= set(json.loads(self.status_path.read_text()).get("regions", []))
        problem = self._nodes_problem()
        if problem:
            self.mode, self.reason = "api-only", problem
        else:
            try:
                self._setup_network()
                self.mode = "nodes"
            except Exception as exc:  # noqa: BLE001 - any failure here means API-only, said plainly
                self.mode, self.reason = "api-only", f"the nodes' network could not be set up: {exc}"
                self._teardown_network()
        self.write_status()
        host, port = self.args.listen.rsplit(":", 1)
        emu_host, emu_port = self.args.emulator.rsplit(":", 1)
        self.front = ec2.ApiFront(host, int(port), (emu_host, int(emu_port)), self.on_change, self.on_region).start()
        log(f"EC2 endpoint http://{self.args.listen} in front of the emulator at {self.args.emulator}; "
            + (f"nodes on {self.args.bridge} ({self.network}, host {self.host_ip})" if self.mode == "nodes"
               else f"API only: {self.reason}"))
        if self.mode == "nodes":
            threading.Thread(target=self._build_image, name="image", daemon=True).start()
        else:
            self.image = "not used"
        self.write_status()

    def _nodes_problem(self) -> str | None:
        if not self.args.nodes:
            return "nodes are turned off (sandbox_nodes=false)"
        problem = nodes.host_problem()
        if problem:
            return problem.replace("test nodes", "sandbox nodes")
        if shutil.which("nft") is None:
            return "sandbox nodes need nft (Debian package nftables) for the metadata address"
        problem = volumes.loop_problem()
        if problem:
            return f"sandbox nodes need loop devices for EBS volumes: {problem}"
        return None

    def _setup_network(self) -> None:
        self.bridge_lock = nodes.BridgeLock(self.args.bridge)
        try:
            self.bridge_lock.acquire(0)
        except nodes.NodesError as exc:
            self.bridge_lock = None
            raise nodes.NodesError(f"bridge {self.args.bridge} belongs to another running sandbox or test: {exc}"
                                   " (give this sandbox its own sandbox_bridge and sandbox_network)") from exc
        leftovers = nodes._remove_leftovers(self.args.bridge)  # pylint: disable=protected-access
        if leftovers:
            log(f"removed what an earlier run left on {self.args.bridge}: {', '.join(leftovers)}")
        self._firewall(delete_only=True)
        # Volume files and node disks of an earlier host stay: when only the host restarted (a setting changed), the
        # emulator still has those instances and their data must survive. The first complete look at the emulator
        # removes what it no longer knows (_sweep).
        for path in self.volume_dir.glob("*.img"):
            with contextlib.suppress(volumes.VolumeError, OSError):
                volumes.detach(path)
        problem = network_problem(str(self.network), host_networks(exclude_link=self.args.bridge))
        if problem:
            raise nodes.NodesError(problem)
        self.bridge = nodes.Bridge(self.args.bridge, str(self.network), self.host_ip)
        self.bridge.create()
        self.metadata = imds.MetadataService(self.lookup_metadata)
        self.metadata_server = self.metadata.serve(self.host_ip, 0)
        self.metadata_port = self.metadata_server.server_address[1]
        self._firewall(delete_only=False)

    def _build_image(self) -> None:
        self.image = "building"
        self.write_status()
        try:
            self.rootfs = nodes.ensure_rootfs(build_dir=Path(self.args.image_cache), log=log)
            self.image = "ready"
        except Exception as exc:  # noqa: BLE001
            self.image = f"failed: {exc}"
            self.mode, self.reason = "api-only", f"the node image could not be built: {exc}"
            log(self.reason)
        self.write_status()
        self.wake.set()

    def _firewall(self, delete_only: bool) -> None:
        table = firewall_table(self.args.bridge)
        script = f"table inet {table}\ndelete table inet {table}\n"  # declaring first makes the delete safe
        if not delete_only:
            script += host_firewall(self.args.bridge, [self.metadata_port, *self.args.allow_port])
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=20,
                              check=False)  # fmt: skip
        if proc.returncode != 0 and not delete_only:
            raise nodes.NodesError(f"could not fence the bridge {self.args.bridge} with nft: {proc.stderr.strip()}")

    def _teardown_network(self) -> None:
        if self.metadata is not None and self.metadata_server is not None:
            # The service stops every server it started, this one included.
            with contextlib.suppress(Exception):
                self.metadata.shutdown()
            self.metadata_server = None
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                self._firewall(delete_only=True)
            with contextlib.suppress(Exception):
                self.bridge.delete()
        if self.bridge_lock is not None:
            self.bridge_lock.release()
            self.bridge_lock = None

    def shutdown(self) -> None:
        """Every node stops at once and every loop device is detached. Their disks and volume files stay: the next
        host removes what the emulator no longer knows (a sandbox stop removes them with the emulator's state)."""
        log("stopping: every node stops; disks and volumes stay for the emulator's instances")
        self.stopping.set()
        self.wake.set()
        if self.front is not None:
            with contextlib.suppress(Exception):
                self.front.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for slot in list(self.slots.values()):
            if slot.node is not None:
                with contextlib.suppress(Exception):
                    slot.node.kill()
        with contextlib.suppress(Exception):
            nodes._cgroup_kill(self.group)  # pylint: disable=protected-access
        for path in self.volume_dir.glob("*.img"):
            with contextlib.suppress(Exception):
                volumes.detach(path)
        self._teardown_network()
        self.mode = "stopped"
        self.write_status()

    # ------------------------------------------------------------------ events from the API front

    def on_region(self, region: str) -> None:
        if region not in self.regions:
            with self.lock:
                self.regions.add(region)
            self.wake.set()

    def on_change(self, region: str, action: str, instance_ids: list[str]) -> None:
        if action == "RebootInstances":
            with self.lock:
                for instance_id in instance_ids:
                    slot = self.slots.get(instance_id)
                    if slot is not None and slot.state in ("running", "booting"):
                        slot.reboot = True
        self.wake.set()

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.args.poll)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the loop must survive anything; the log says what
                log("reconcile failed:\n" + traceback.format_exc())

    def reconcile(self) -> None:
        with self.lock:
            regions = sorted(self.regions)
        seen: dict[str, ec2.Instance] = {}
        answered: set[str] = set()
        for region in regions:
            try:
                for instance in self.reader.instances(region):
                    seen[instance.instance_id] = instance
                answered.add(region)
            except Exception as exc:  # noqa: BLE001 - the emulator restarting, or a region it refuses
                log(f"DescribeInstances in {region} failed: {exc}")
        with self.lock:
            self.instances = seen
            for instance in seen.values():
                self._decide(instance)
            for instance_id, slot in list(self.slots.items()):
                if instance_id not in seen and slot.region in answered:
                    # Gone from the emulator (reset, or its record expired): nothing is left to keep.
                    self._schedule(slot, self._terminate, None)
        if not self.swept and regions and answered == set(regions) and self.mode == "nodes":
            self._sweep(seen, regions)
        self.write_status()

    def _sweep(self, seen: dict[str, ec2.Instance], regions: list[str]) -> None:
        """Once per host: remove volume files and node disks that no volume or instance of the emulator owns any more
        (left by a host whose emulator was reset or stopped)."""
        known_volumes: set[str] = set()
        for region in regions:
            try:
                known_volumes |= set(self.reader.volume_sizes_all(region))
            except Exception as exc:  # noqa: BLE001 - try again at the next look
                log(f"DescribeVolumes in {region} failed: {exc}")
                return
        for path in self.volume_dir.glob("*.img"):
            if path.stem not in known_volumes:
                with contextlib.suppress(volumes.VolumeError, OSError):
                    volumes.delete(path)
                log(f"removed {path.name}: the emulator has no such volume")
        live = {node_name(i) for i, instance in seen.items() if not instance.gone}
        if self.nodes_dir.is_dir():
            for path in self.nodes_dir.iterdir():
                if path.name not in live:
                    shutil.rmtree(path, ignore_errors=True)
                    log(f"removed the disk of node {path.name}: its instance is gone")
        self.swept = True

    def _decide(self, instance: ec2.Instance) -> None:
        slot = self.slots.get(instance.instance_id)
        if instance.gone:
            if slot is not None and slot.state != "terminated":
                self._schedule(slot, self._terminate, instance)
            return
        if slot is None:
            if not instance.wants_node:
                return
            slot = Slot(instance.instance_id, instance.region, node_name(instance.instance_id), instance.private_ip)
            self.slots[instance.instance_id] = slot
            slot.reason = self._admission_problem(slot)
            if slot.reason:
                slot.state = "api-only"
                if self.mode == "nodes":
                    log(f"WARNING: {instance.instance_id} stays API-only: {slot.reason}")
                return
        if slot.state == "api-only":
            return
        if instance.wants_node:
            if slot.state in ("new", "stopped"):
                self._schedule(slot, self._boot, instance)
            elif slot.state == "running" and slot.reboot:
                self._schedule(slot, self._reboot, instance)
            elif slot.state == "running" and slot.node is not None and not slot.node.running and not slot.busy:
                code = slot.node.proc.returncode if slot.node.proc else None
                if code == 133:  # nspawn's exit status when the machine rebooted itself
                    self._schedule(slot, self._boot, instance)
                else:
                    self._schedule(slot, self._powered_off, instance)
        elif instance.state in ("stopping", "stopped") and slot.state in ("running", "booting", "failed"):
            self._schedule(slot, self._stop, instance)

    def _admission_problem(self, slot: Slot) -> str:
        if self.mode != "nodes":
            return self.reason or "the sandbox runs API-only"
        if slot.ip is None:
            return "the emulator gave it no private IP"
        if ipaddress.ip_address(slot.ip) not in self.network or slot.ip == self.host_ip:
            return f"its private IP {slot.ip} is outside the sandbox network {self.network} (launched into another VPC?)"
        holders = [s for s in self.slots.values() if s is not slot and s.state not in ("api-only", "terminated")]
        if any(s.ip == slot.ip for s in holders):
            return f"another instance's node holds {slot.ip} (another region's default VPC uses the same range)"
        if any(s.name == slot.name for s in holders):
            return f"node name {slot.name} is taken"
        if len(holders) >= self.args.max_nodes:
            return f"sandbox_max_nodes ({self.args.max_nodes}) nodes run already"
        return ""

    def _schedule(self, slot: Slot, action: Any, instance: ec2.Instance | None) -> None:
        if slot.busy or self.stopping.is_set():
            return
        if self.rootfs is None and action in (self._boot, self._reboot):
            slot.reason = f"waiting for the node image ({self.image})"
            return
        slot.busy = True

        def work() -> None:
            try:
                action(slot, instance)
            except Exception as exc:  # noqa: BLE001 - one node's failure is reported, never fatal
                slot.state, slot.reason = "failed", str(exc)
                log(f"{slot.instance_id} ({slot.name}): {exc}")
            finally:
                with self.lock:
                    slot.busy = False
                self.write_status()
                self.wake.set()

        self.pool.submit(work)

    # ------------------------------------------------------------------ node actions (worker threads)

    def _make_node(self, slot: Slot, instance: ec2.Instance) -> nodes.Node:
        assert self.rootfs is not None and self.bridge is not None and slot.ip is not None
        files: dict[str, Any] = dict(self.image_files)
        files.update(self.overlay)
        node = nodes.Node(
            slot.name, slot.ip, rootfs=self.rootfs, state_dir=self.nodes_dir / slot.name, group=self.group,
            bridge=self.bridge.name, prefixlen=self.network.prefixlen, files=files, enable=NODE_UNITS,
            hostname=short_hostname(instance.private_dns, slot.ip), routes=[f"{METADATA_IP}/32"],
            # The same machine id for the same instance whatever host boots it (etcd names its member after it).
            machine_id=uuid.uuid5(uuid.NAMESPACE_URL, f"coreos-ec2-sandbox:{instance.instance_id}").hex,
        )
        return node

    def _attach_volumes(self, slot: Slot, instance: ec2.Instance) -> dict[str, str]:
        sizes = self.reader.volume_sizes(instance.region, [v.volume_id for v in instance.volumes])
        binds: dict[str, str] = {}
        for volume in instance.volumes:
            path = volumes.ensure_file(self.volume_dir, volume.volume_id, sizes.get(volume.volume_id, 1))
            loop = volumes.attach(path)
            device = volumes.node_device(volume.device_name)
            binds[loop] = device
            slot.volumes[volume.volume_id] = {"file": str(path), "loop": loop, "device": volume.device_name,
                                              "node_device": device, "size_gib": sizes.get(volume.volume_id, 1),
                                              "delete_on_termination": volume.delete_on_termination}
        return binds

    def _detach_volumes(self, slot: Slot) -> None:
        for info in slot.volumes.values():
            with contextlib.suppress(volumes.VolumeError, OSError):
                volumes.detach(Path(info["file"]))
            info["loop"] = None

    def _boot(self, slot: Slot, instance: ec2.Instance) -> None:
        slot.state, slot.reason, slot.reboot = "booting", "", False
        slot.launched_at = time.monotonic()
        # User data and key may change while an instance is stopped: read them at every boot.
        slot.user_data = self.reader.user_data(instance.region, instance.instance_id)
        slot.public_key = self.reader.public_key(instance.region, instance.key_name) if instance.key_name else None
        if slot.node is None:
            slot.node = self._make_node(slot, instance)
        slot.node.binds = self._attach_volumes(slot, instance)
        slot.node.launch()
        deadline = time.monotonic() + 20
        while slot.node.leader is None:
            slot.node.leader = slot.node._find_leader()  # pylint: disable=protected-access
            if slot.node.leader is None:
                if not slot.node.running:
                    raise nodes.NodesError(f"systemd-nspawn exited at start:\n{slot.node.console_tail(1500)}")
                if time.monotonic() > deadline:
                    raise nodes.NodesError("the node's systemd did not start within 20 s")
                time.sleep(0.02)
        self._route_metadata(slot.node)
        slot.boot_seconds = time.monotonic() - slot.launched_at
        slot.state = "running"
        log(f"{instance.instance_id}: node {slot.name} up at {slot.ip}"
            + (f" with {', '.join(v['node_device'] for v in slot.volumes.values())}" if slot.volumes else ""))

    def _route_metadata(self, node: nodes.Node) -> None:
        proc = subprocess.run(["nsenter", "-t", str(node.leader), "-n", "nft", "-f", "-"],
                              input=nft_rules(self.host_ip, self.metadata_port), capture_output=True, text=True,
                              timeout=20, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise nodes.NodesError(f"could not route {METADATA_IP} in the node: {proc.stderr.strip()}")

    def _stop(self, slot: Slot, instance: ec2.Instance | None) -> None:
        slot.state = "stopping"
        if slot.node is not None:
            slot.node.stop(timeout=self.args.stop_timeout)
        self._detach_volumes(slot)
        slot.state, slot.reason = "stopped", ""
        log(f"{slot.instance_id}: node {slot.name} powered off")

    def _reboot(self, slot: Slot, instance: ec2.Instance) -> None:
        log(f"{slot.instance_id}: rebooting node {slot.name}")
        self._stop(slot, instance)
        self._boot(slot, instance)

    def _powered_off(self, slot: Slot, instance: ec2.Instance) -> None:
        # The machine shut itself down: on EC2 the instance then stops (its shutdown behaviour's default).
        self._stop(slot, instance)
        with contextlib.suppress(Exception):
            self.reader.client(instance.region).stop_instances(InstanceIds=[instance.instance_id])
        log(f"{instance.instance_id}: the node powered itself off; the instance is stopped")

    def _terminate(self, slot: Slot, instance: ec2.Instance | None) -> None:
        if slot.node is not None:
            slot.node.stop(timeout=self.args.stop_timeout)
        self._detach_volumes(slot)
        for volume_id, info in slot.volumes.items():
            keep = instance is not None and not info["delete_on_termination"]
            if not keep:
                with contextlib.suppress(volumes.VolumeError, OSError):
                    volumes.delete(Path(info["file"]))
                log(f"{slot.instance_id}: volume {volume_id} deleted")
        shutil.rmtree(self.nodes_dir / slot.name, ignore_errors=True)
        slot.node = None
        slot.state = "terminated"
        with self.lock:
            self.slots.pop(slot.instance_id, None)
        log(f"{slot.instance_id}: node {slot.name} removed")

    # ------------------------------------------------------------------ metadata

    def lookup_metadata(self, client_ip: str) -> imds.InstanceMetadata | None:
        with self.lock:
            slot = next((s for s in self.slots.values() if s.ip == client_ip and s.node is not None), None)
            instance = self.instances.get(slot.instance_id) if slot else None
        if slot is None or instance is None:
            return None
        return imds.InstanceMetadata(
            instance_id=instance.instance_id, instance_type=instance.instance_type,
            availability_zone=instance.availability_zone, region=instance.region,
            local_ipv4=instance.private_ip or "", public_ipv4=instance.public_ip,
            local_hostname=instance.private_dns or short_hostname("", client_ip),
            public_hostname=instance.public_dns or None, ami_id=instance.image_id,
            reservation_id=instance.reservation_id, security_groups=instance.security_groups,
            key_name=instance.key_name, public_key=slot.public_key, user_data=slot.user_data,
            http_tokens=instance.http_tokens, http_endpoint=instance.http_endpoint, mac=instance.mac,
        )

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        with self.lock:
            slots = list(self.slots.values())
            regions = sorted(self.regions)
        return {
            "pid": os.getpid(),
            "mode": self.mode,
            "reason": self.reason,
            "image": self.image,
            "bridge": self.args.bridge if self.mode == "nodes" else None,
            "network": str(self.network),
            "host_ip": self.host_ip if self.mode == "nodes" else None,
            "metadata": f"{self.host_ip}:{self.metadata_port}" if self.metadata_port else None,
            "max_nodes": self.args.max_nodes,
            "regions": regions,
            "instances": {
                s.instance_id: {
                    "region": s.region, "node": s.name, "ip": s.ip, "state": s.state, "reason": s.reason,
                    "leader_pid": s.node.leader if s.node is not None and s.node.running else None,
                    "boot_seconds": round(s.boot_seconds, 2) if s.boot_seconds else None,
                    "volumes": {k: {kk: vv for kk, vv in v.items() if kk != "loop"} for k, v in s.volumes.items()},
                }
                for s in sorted(slots, key=lambda s: s.instance_id)
            },
        }

    def write_status(self) -> None:
        data = json.dumps(self.status(), indent=1, sort_keys=True) + "\n"
        tmp = self.status_path.with_name(f".status.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(data)
            os.replace(tmp, self.status_path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox_host", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--listen", default="127.0.0.1:5000", help="HOST:PORT of the sandbox's EC2 endpoint")
    parser.add_argument("--emulator", required=True, help="HOST:PORT of the EC2 emulator behind it")
    parser.add_argument("--network", default=DEFAULT_NETWORK, help="the emulator's default VPC range")
    parser.add_argument("--bridge", default=DEFAULT_BRIDGE)
    parser.add_argument("--max-nodes", type=int, default=10)
    parser.add_argument("--image-cache", default=str(nodes.BUILD_DIR))
    parser.add_argument("--image-tree", default=str(IMAGE_TREE))
    parser.add_argument("--overlay", default="", help="a directory copied over the image into every new node")
    parser.add_argument("--region", action="append", help="a region to watch from the start (more are learnt)")
    parser.add_argument("--no-nodes", dest="nodes", action="store_false", help="API only: boot no node")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the emulator")
    parser.add_argument("--stop-timeout", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--allow-port", type=int, action="append", default=[],
                        help="a host TCP port the nodes may reach on the bridge address (the discovery service)")
    parser.add_argument("--check", action="store_true",
                        help="only check the address range against this host's networks (exit 2 with the reason)")
    args = parser.parse_args(argv)
    if args.overlay and not Path(args.overlay).is_dir():
        parser.error(f"--overlay {args.overlay}: not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        # Run before the sandbox starts, so a bad range is refused before the emulator takes it for its VPC.
        problem = network_problem(args.network, host_networks(exclude_link=args.bridge)) if os.geteuid() == 0 else None
        if problem:
            print(problem, file=sys.stderr)
            return 2
        return 0
    host = Host(args)

    def on_signal(signum: int, _frame: Any) -> None:
        host.stopping.set()
        host.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        host.start()
        host.run()
    finally:
        host.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
