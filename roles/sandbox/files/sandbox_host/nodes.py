# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machines on one host: systemd-nspawn containers that boot a real systemd.

The sandbox's host process (host.py) boots one per emulated EC2 instance; the tests' Cluster builds the
usual N-node case for tests that need machines without the emulator.

    with Cluster(n=3) as nodes:                  # bridge, host etcd, token, 3 nodes, all healthy
        nodes[0].ssh("ETCDCTL_API=2 etcdctl cluster-health")     # CompletedProcess, as core
        nodes[1].stop(); nodes[1].start(); nodes.wait_ready()

    Cluster(n, discovery_url=URL | callable(cluster) -> URL | None (a token on cluster.start_host_etcd()),
            extra_files={path: content | (content, mode)}, enable_units=[unit], node_files=f(name, ip),
            etcd=True, etcd_env={}, state_dir=None, bridge="ce2br0", subnet="10.213.0.0/24", ...)
    node: .name .ip .machine_id .ssh(cmd) .ssh_argv() .exec(argv) (root, via nsenter) .stop() .start()
          .kill() .running .boot_seconds .memory_pss() .journal(unit) .private_key_path .ssh_user
    cluster: .nodes (also iter/len/[i]) .host_ip .discovery_url .host_etcd .wait_ready(timeout=60)
             .make_node(name, ip, files, enable) / .add_node(...) for machines beyond the first n
             .cleanup() (idempotent)       cleanup_stale(bridge): what a killed run left

Host needs (Debian): systemd-container, debootstrap, iproute2, util-linux, openssh-client, etcd-server;
root; the overlay file system; the Debian mirror apt uses (for the one-time root file system build).

Each node boots a Debian bookworm root file system (built once with debootstrap, cached under
.build/nodes/rootfs-<key>) through its own overlay, so the cached tree stays clean and a node keeps its
state (etcd data, files a test wrote) across stop() and start(). A node has its own machine id, hostname,
ssh host key and a static address on a private bridge; sshd lets `core` in with a key the harness makes,
and `core` has passwordless sudo, as on CoreOS. etcd (Debian's 3.4, v2 API on) joins its peers through
a discovery URL.

Built for hosts without systemd as PID 1 (no machined, no udev, hybrid cgroups); see _launch_argv for
the choices that makes necessary. Everything a run creates is named after its bridge (cgroups, the run
record under .build/nodes/run/), so a run killed half way is cleaned up by the next one on that bridge.

Only stdlib; only addresses of the private bridge's subnet (default 10.213.0.0/24 on ce2br0).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Union

# Part of the root file system's cache key: bump it when _CUSTOMISE or the build steps change meaning.
HARNESS_VERSION = "1"
# The root file system cache: about 200 MB, kept apart from the sandbox state so that removing the sandbox
# does not cost another debootstrap. `make` points it at .build/nodes in the checkout.
BUILD_DIR = Path(os.environ.get("COREOS_EC2_IMAGE_CACHE") or Path.home() / ".cache" / "coreos_ec2" / "nodes")
SUITE = "bookworm"
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "etcd-server",
    "etcd-client",
    "python3",
    "python3-yaml",
    "e2fsprogs",
    "util-linux",
    "iproute2",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "curl",
)
SSH_USER = "core"
CORE_UID = 500  # CoreOS's uid and gid for `core`
DEFAULT_BRIDGE = "ce2br0"
DEFAULT_SUBNET = "10.213.0.0/24"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CGROUP_FS = Path("/sys/fs/cgroup")
NSPAWN_PROPAGATE = Path("/run/systemd/nspawn/propagate")
# Host-wide, not per checkout: a bridge name is host-wide too. Holds <bridge>.lock and <bridge>.json.
RUN_DIR = Path("/run/coreos-ec2-nodes")

# The binaries the harness runs on the host, and the Debian package that has each.
HOST_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "etcd": "etcd-server",
}

# Run once in the fresh tree (chroot). Nodes write their own identity (machine id, hostname, host key,
# hosts, network, etcd settings) into their overlay, so the shared tree carries none.
_CUSTOMISE = r"""
set -eu
groupadd --gid 500 core
useradd --uid 500 --gid 500 --create-home --shell /bin/bash --groups sudo,systemd-journal core
usermod --password '*' core  # no password, but not locked: sshd refuses key logins to locked accounts
printf 'core ALL=(ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/core
chmod 0440 /etc/sudoers.d/core
mkdir -p /opt/bin
: > /etc/machine-id
ln -sf /etc/machine-id /var/lib/dbus/machine-id
rm -f /etc/hostname /etc/ssh/ssh_host_*
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
: > /etc/resolv.conf
cat > /etc/ssh/sshd_config.d/10-nodes.conf <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
SetEnv PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
# etcd is configured and enabled per node; the rest is housekeeping a short-lived test machine never needs.
for unit in etcd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            fstrim.timer e2scrub_reap.service systemd-pstore.service getty@tty1.service; do
  if [ -e "/lib/systemd/system/$unit" ] || [ -e "/lib/systemd/system/${unit%%@*}@.service" ]; then
    systemctl disable --quiet "$unit"
  fi
done
systemctl enable --quiet systemd-networkd.service systemd-networkd-wait-online.service
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/*.log /var/log/apt/*
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/locale/* /usr/share/info/*  # 65 MB nobody reads here
"""

FileContent = Union[str, bytes]
FileSpec = Union[FileContent, tuple[FileContent, int]]


class NodesError(RuntimeError):
    """A node, the bridge or the root file system could not be set up or did not become ready."""


# ---------------------------------------------------------------------------------------------- host


def host_problem() -> str | None:
    """Why nodes cannot run on this host, or None. Cheap checks only; probe_boot() tries a real boot."""
    if os.geteuid() != 0:
        return "test nodes need root (network bridge, overlay mounts, cgroups, systemd-nspawn)"
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return f"test nodes need these Debian packages: {' '.join(missing)}"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        return f"cannot read /proc/filesystems: {exc}"
    if not re.search(r"\toverlay$", filesystems, re.M):
        return "the kernel has no overlay file system (modprobe overlay)"
    if not _cgroup_hierarchies():
        return f"no writable cgroup hierarchy under {CGROUP_FS}"
    return None


def _cgroup_hierarchies() -> list[Path]:
    """The hierarchies systemd cares about: name=systemd and the unified one (hybrid), or just cgroup2.

    A node's processes go into a directory of their own in each, so nspawn's `--keep-unit` puts every
    node's payload/supervisor pair in a separate place and the harness can find and kill them later.
    """
    hybrid = [CGROUP_FS / "systemd", CGROUP_FS / "unified"]
    if all((p / "cgroup.procs").exists() for p in hybrid):
        return hybrid
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [p for p in hybrid if (p / "cgroup.procs").exists()]


def _cgroup_group(group: str) -> list[Path]:
    return [h / group for h in _cgroup_hierarchies()]


def _cgroup_pids(group: str) -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_group(group):
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def _cgroup_kill(group: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the group's subtree, wait until none is left, remove the directories."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _cgroup_pids(group)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NodesError(f"processes {sorted(pids)} in cgroup {group} survived SIGKILL")
        time.sleep(0.05)
    _cgroup_remove(group)


def _cgroup_remove(group: str) -> None:
    for top in _cgroup_group(group):
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            # An empty cgroup goes away a moment after its last process; retry briefly.
            for _attempt in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _spawn_in_cgroup(group: str, argv: list[str], **popen: object) -> subprocess.Popen:
    """Start argv in a new session, inside `group` in every hierarchy (made if missing).

    A tiny shell moves itself into the group and then execs argv, so no Python runs between fork and exec.
    """
    procs = []
    for path in _cgroup_group(group):
        path.mkdir(parents=True, exist_ok=True)
        procs.append(str(path / "cgroup.procs"))
    script = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
    return subprocess.Popen(["sh", "-c", script, "sh", *procs, "--", *argv], start_new_session=True, **popen)


def _run(argv: list[str], timeout: float = 60, check: bool = True, **kw: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          check=False, **kw)  # fmt: skip
    if check and proc.returncode != 0:
        raise NodesError(f"{' '.join(argv)} failed with exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids += [int(k) for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _links_on_bridge(bridge: str) -> list[str]:
    path = Path("/sys/class/net", bridge, "brif")
    return sorted(os.listdir(path)) if path.is_dir() else []


def _http(method: str, url: str, data: bytes | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------ root file system


def debian_mirror(sources: Iterable[Path] | None = None) -> str:
    """The host's Debian mirror (the first http(s) URI serving a `<suite>` or `<suite>-updates`), so the
    build uses the same, reachable archive apt does. COREOS_EC2_NODES_MIRROR overrides it."""
    override = os.environ.get("COREOS_EC2_NODES_MIRROR")
    if override:
        return override.rstrip("/")
    if sources is None:
        etc = Path("/etc/apt")
        sources = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.name.endswith(".sources"):
            found = _mirror_from_deb822(text)
        elif path.name.endswith(".list"):
            found = _mirror_from_list(text)
        else:
            continue  # sources.list.d files apt ignores (e.g. *.disabled)
        if found:
            return found
    return FALLBACK_MIRROR


def _is_debian_main(uri: str, suites: Iterable[str]) -> bool:
    return uri.startswith(("http://", "https://")) and "security" not in uri and SUITE in set(suites)


def _mirror_from_list(text: str) -> str | None:
    for line in text.splitlines():
        fields = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(fields) >= 3 and fields[0] == "deb" and _is_debian_main(fields[1], [fields[2]]):
            return fields[1].rstrip("/")
    return None


def _mirror_from_deb822(text: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            if _is_debian_main(uri, fields.get("suites", "").split()):
                return uri.rstrip("/")
    return None


def rootfs_key(packages: Iterable[str] = PACKAGES, suite: str = SUITE) -> str:
    """Cache key of a root file system: what goes in and how it is customised, not where it comes from."""
    material = json.dumps([HARNESS_VERSION, suite, sorted(set(packages)), _CUSTOMISE])
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def rootfs_path(packages: Iterable[str] = PACKAGES, build_dir: Path = BUILD_DIR) -> Path:
    return Path(build_dir) / f"rootfs-{rootfs_key(packages)}"


def ensure_rootfs(
    packages: Iterable[str] = PACKAGES,
    build_dir: Path = BUILD_DIR,
    mirror: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The cached root file system for `packages`, built first if missing (about a minute).

    The build runs into a temporary directory that is renamed into place when complete, under an
    exclusive lock, so a crashed build is never used and two runs never build at once. Trees of other
    keys (older package lists or harness versions) are removed once the new one is in place.
    """
    packages = sorted(set(packages))
    build_dir = Path(build_dir)
    target = rootfs_path(packages, build_dir)
    if target.is_dir():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / "rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():  # another run built it while we waited
            return target
        for stale in build_dir.glob(".rootfs-*.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = build_dir / f".{target.name}.tmp{os.getpid()}"
        mirror = mirror or debian_mirror()
        started = time.monotonic()
        if log:
            log(f"building {target.name} from {mirror} ({len(packages)} packages)")
        cache = build_dir / "debs"
        cache.mkdir(exist_ok=True)
        # debootstrap mounts /proc and /sys inside the target; in a private mount namespace those go
        # away with it even when it is killed, instead of staying behind on the host.
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "debootstrap", "--variant=minbase", f"--include={','.join(packages)}", f"--cache-dir={cache}",
            SUITE, str(tmp), mirror,
        ]  # fmt: skip
        try:
            build_log = build_dir / "rootfs-build.log"
            with open(build_log, "w") as out:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
            if proc.returncode != 0:
                tail = build_log.read_text(errors="replace")[-3000:]
                raise NodesError(f"debootstrap of {SUITE} from {mirror} failed (exit {proc.returncode}):\n{tail}")
            _run(["unshare", "--mount", "--propagation", "private", "chroot", str(tmp), "sh", "-c", _CUSTOMISE],
                 timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
            (tmp / "etc" / "coreos-ec2-nodes").write_text(
                json.dumps({"key": target.name, "packages": packages, "mirror": mirror}) + "\n"
            )
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        for old in build_dir.glob("rootfs-*"):
            if old.is_dir() and old != target:
                shutil.rmtree(old, ignore_errors=True)
        if log:
            log(f"built {target.name} in {time.monotonic() - started:.0f} s")
    return target


# ------------------------------------------------------------------------------------------ units


def install_targets(unit_text: str) -> dict[str, list[str]]:
    """The [Install] section of a unit file: {"WantedBy": [...], "RequiredBy": [...], "Alias": [...]}."""
    found: dict[str, list[str]] = {"WantedBy": [], "RequiredBy": [], "Alias": []}
    section = None
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Install" and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if key in found:
                found[key] = [] if not value else found[key] + value.split()
    return found


def _as_bytes(content: FileContent) -> bytes:
    return content.encode() if isinstance(content, str) else content


# ------------------------------------------------------------------------------------------ network


def _check_ifname(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", name):
        raise NodesError(f"{name!r} is not a usable interface name (1-15 letters, digits, '_', '.', '-')")


class Bridge:
    """A Linux bridge with one host address; nodes' veths attach to it. Nothing is routed off it."""

    def __init__(self, name: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET, host_ip: str | None = None):
        _check_ifname(name)
        self.name = name
        self.network = ipaddress.ip_network(subnet)
        self.host_ip = host_ip or str(next(self.network.hosts()))

    def create(self) -> None:
        if _link_exists(self.name):
            raise NodesError(f"bridge {self.name} exists already (cleanup_stale() removes a finished run's)")
        _run(["ip", "link", "add", self.name, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.host_ip}/{self.network.prefixlen}", "dev", self.name])
        _run(["ip", "link", "set", self.name, "up"])

    def delete(self) -> None:
        for link in _links_on_bridge(self.name):
            _run(["ip", "link", "delete", link], check=False)
        if _link_exists(self.name):
            _run(["ip", "link", "delete", self.name])

    def exists(self) -> bool:
        return _link_exists(self.name)


# ------------------------------------------------------------------------------------------ host etcd


class HostEtcd:
    """A one-member etcd on the host's bridge address: the discovery service nodes can reach.

    It runs in the cluster's cgroup group, so a crashed run's leftover is found and killed by the next.
    """

    def __init__(self, ip: str, data_dir: Path, group: str, client_port: int = 0):
        self.ip = ip
        self.data_dir = Path(data_dir)
        self.group = group
        self.client_port = client_port
        self.proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.ip}:{self.client_port}"

    def _free_port(self) -> int:
        with socket.socket() as sock:
            sock.bind((self.ip, 0))
            return sock.getsockname()[1]

    def start(self, timeout: float = 20) -> "HostEtcd":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_port = self.client_port or self._free_port()
        peer = f"http://{self.ip}:{self._free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_") and "proxy" not in k.lower()}
        argv = [
            shutil.which("etcd") or "/usr/bin/etcd", "--name", "discovery", "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"discovery={peer}", "--enable-v2",
        ]  # fmt: skip
        log = open(self.data_dir / "etcd.log", "w")
        try:
            self.proc = _spawn_in_cgroup(f"{self.group}/host-etcd", argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if _http("GET", self.client_url + "/health", timeout=1)[0] == 200:
                    return self
            time.sleep(0.1)
        tail = (self.data_dir / "etcd.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise NodesError(f"host etcd at {self.client_url} did not become healthy in {timeout} s:\n{tail}")

    def new_token(self, size: int) -> str:
        """A v2 discovery URL for `size` members (the layout discovery.etcd.io and etcd itself use)."""
        base = f"{self.client_url}/v2/keys/_etcd/registry/{uuid.uuid4().hex}"
        status, body = _http("PUT", base + "/_config/size", data=f"value={size}".encode())
        if status not in (200, 201):
            raise NodesError(f"Failed to create discovery token at {base}: HTTP {status} {body[:200]!r}")
        return base

    def registered(self, discovery_url: str) -> list[str]:
        """The `name=peerURL` values members registered under a token."""
        status, body = _http("GET", discovery_url)
        if status != 200:
            return []
        node = json.loads(body).get("node", {})
        return sorted(n.get("value", "") for n in node.get("nodes", []) if not n.get("dir"))

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        _cgroup_kill(f"{self.group}/host-etcd")


# ------------------------------------------------------------------------------------------ ssh key


def make_ssh_key(directory: Path) -> Path:
    """A fresh ed25519 key pair in `directory`; returns the private key's path (public: + '.pub')."""
    key = Path(directory) / "id_ed25519"
    if not key.exists():
        Path(directory).mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "coreos-ec2-test-nodes", "-f", str(key)])
    return key


# ------------------------------------------------------------------------------------------ node


class Node:
    """One machine: a systemd-nspawn container booting systemd from `rootfs` through its own overlay.

    Parameterised by what distinguishes machines (name, ip, files, units), so a single node can stand in
    for any cluster machine; Cluster builds the usual N-node case on top. `files` maps absolute paths in
    the node to content or (content, mode); they are written into the node's overlay before its first
    boot, as are the `enable` units' [Install] links. Nothing is written into `rootfs`.
    """

    def __init__(
        self,
        name: str,
        ip: str | None,
        *,
        rootfs: Path,
        state_dir: Path,
        group: str,
        bridge: str | None = None,
        prefixlen: int = 24,
        gateway: str | None = None,
        authorized_key: str = "",
        private_key_path: Path | None = None,
        files: Mapping[str, FileSpec] | None = None,
        enable: Iterable[str] = (),
        hosts: Mapping[str, str] | None = None,
        machine_id: str | None = None,
        hostname: str | None = None,
        binds: Mapping[str, str] | None = None,
        routes: Iterable[str] = (),
    ):
        # nspawn names the host end of the veth vb-<name>; interface names are at most 15 characters.
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", name):
            raise NodesError(f"node name {name!r}: use 1-12 lower-case letters, digits and '-' (a hostname)")
        self.name = name
        self.ip = ip
        self.rootfs = Path(rootfs)
        self.dir = Path(state_dir)
        self.group = f"{group}/{name}"
        self.bridge = bridge
        self.prefixlen = prefixlen
        self.gateway = gateway
        self.authorized_key = authorized_key
        self.private_key_path = Path(private_key_path) if private_key_path else None
        self.ssh_user = SSH_USER
        self.files = dict(files or {})
        self.enable = list(enable)
        self.hosts = dict(hosts or {})
        self.machine_id = machine_id or uuid.uuid4().hex
        self.hostname = hostname or name
        # Host device -> path in the node (e.g. a loop device shown as /dev/xvdb); set before each launch.
        self.binds = dict(binds or {})
        # Extra on-link routes (CIDRs) through the node's interface, e.g. the metadata address.
        self.routes = list(routes)
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.boot_seconds: float | None = None
        self.system_state: str | None = None
        self._launched_at = 0.0
        self._prepared = False
        self.etcd = False  # whether the node runs an etcd member (Cluster.make_node sets it)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.ip!r}, running={self.running})"

    # Layout of the node's directory: the overlay's upper and work dirs, a mount point, nspawn's output.
    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def veth(self) -> str:
        return f"vb-{self.name}"

    # --------------------------------------------------------------------------------- preparation

    def prepare(self) -> None:
        """Write the node's identity, network, ssh access and the caller's files into its overlay."""
        if self._prepared:
            return
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        files: dict[str, FileSpec] = {
            "/etc/machine-id": (self.machine_id + "\n", 0o444),
            "/etc/hostname": self.hostname + "\n",
            "/etc/hosts": self._hosts_file(),
        }
        if self.ip and self.bridge:
            files["/etc/systemd/network/10-host0.network"] = self._network_file()
        for path, spec in files.items():
            self.write_file(path, spec)
        host_key = self._host_path("/etc/ssh/ssh_host_ed25519_key")
        if not host_key.exists():  # each node its own, as machines have
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}", "-f", str(host_key)])
        if self.authorized_key:
            self.write_file(f"/home/{SSH_USER}/.ssh/authorized_keys", (self.authorized_key, 0o600),
                            uid=CORE_UID, gid=CORE_UID, dir_mode=0o700)  # fmt: skip
        for path, spec in self.files.items():
            self.write_file(path, spec)
        for unit in self.enable:
            self.enable_unit(unit)
        self._prepared = True

    def _hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if self.ip:
            lines.append(f"{self.ip}\t{self.hostname}")
        lines += [f"{ip}\t{name}" for name, ip in self.hosts.items() if name != self.name]
        return "\n".join(lines) + "\n"

    def _network_file(self) -> str:
        # host0 is nspawn's name for the container end of the veth. Sorted before the image's
        # 80-container-host0.network (DHCP), so this static address wins.
        text = f"[Match]\nName=host0\n\n[Network]\nAddress={self.ip}/{self.prefixlen}\n"
        text += "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        if self.gateway:
            text += f"Gateway={self.gateway}\n"
        for route in self.routes:
            text += f"\n[Route]\nDestination={route}\nScope=link\n"
        return text

    def _host_path(self, path: str, dir_mode: int = 0o755, uid: int = 0, gid: int = 0) -> Path:
        """Where `path` of the node lives in the upper dir, parent directories made like the image's."""
        if not path.startswith("/") or ".." in Path(path).parts:
            raise NodesError(f"{self.name}: file path {path!r} must be absolute and without '..'")
        rel = self._resolve_dirs(path)
        self._mkdirs_like_image(rel.parent, dir_mode, uid, gid)
        return self.upper / rel

    def _resolve_dirs(self, path: str) -> Path:
        """`path` (relative to /) with the image's directory symlinks followed, as the node will see them:
        bookworm's /lib is a link to usr/lib, and a real directory `lib` in the upper dir would hide it."""
        todo = list(Path(path.lstrip("/")).parts)
        done = Path()
        for _hop in range(40):
            if len(todo) <= 1:
                return done.joinpath(*todo)
            image = self.rootfs / done / todo[0]
            if image.is_symlink():
                target = os.readlink(image)
                base = "/" if target.startswith("/") else "/" + str(done)
                todo = list(Path(os.path.normpath(os.path.join(base, target)).lstrip("/")).parts) + todo[1:]
                done = Path()
            else:
                done = done / todo.pop(0)
        raise NodesError(f"{self.name}: too many symbolic links in the image on the way to {path}")

    def _mkdirs_like_image(self, rel: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        # The upper dir's copy of a directory hides the image's owner and mode in the merged view, so a
        # directory that exists in the image is made with its owner and mode (e.g. /home/core for sshd's
        # StrictModes); new ones get the given ones.
        current = Path()
        for part in rel.parts:
            current = current / part
            upper = self.upper / current
            if upper.exists():
                continue
            image = self.rootfs / current
            if image.is_dir() and not image.is_symlink():
                st = image.stat()
                upper.mkdir()
                os.chown(upper, st.st_uid, st.st_gid)
                os.chmod(upper, st.st_mode & 0o7777)
            elif image.is_symlink() or image.exists():
                raise NodesError(f"{self.name}: /{current} is not a directory in the image")
            else:
                upper.mkdir()
                os.chown(upper, uid, gid)
                os.chmod(upper, mode)

    def write_file(self, path: str, spec: FileSpec, uid: int = 0, gid: int = 0, dir_mode: int = 0o755) -> None:
        """Put a file into the node (before boot, or while stopped). spec: content or (content, mode)."""
        content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        target = self._host_path(path, dir_mode, uid, gid)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_bytes(_as_bytes(content))
        os.chown(target, uid, gid)
        os.chmod(target, mode)

    def _read_node_file(self, path: str) -> str | None:
        for base in (self.upper, self.rootfs):
            candidate = base / path.lstrip("/")
            if candidate.is_file():
                return candidate.read_text(errors="replace")
        return None

    def enable_unit(self, unit: str) -> None:
        """What `systemctl enable` does, on the overlay: links for WantedBy=, RequiredBy= and Alias=."""
        template = re.sub(r"@[^.]+\.", "@.", unit)
        path = text = None
        for directory in ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"):
            for name in (unit, template):
                text = self._read_node_file(f"{directory}/{name}")
                if text is not None:
                    path = f"{directory}/{name}"
                    break
            if text is not None:
                break
        if text is None or path is None:
            raise NodesError(f"{self.name}: cannot enable {unit}: no unit file in the image or the node's files")
        install = install_targets(text)
        if not (install["WantedBy"] or install["RequiredBy"] or install["Alias"]):
            raise NodesError(f"{self.name}: cannot enable {unit}: it has no [Install] section")
        links = [f"/etc/systemd/system/{t}.wants/{unit}" for t in install["WantedBy"]]
        links += [f"/etc/systemd/system/{t}.requires/{unit}" for t in install["RequiredBy"]]
        links += [f"/etc/systemd/system/{alias}" for alias in install["Alias"]]
        for link in links:
            host = self._host_path(link)
            if host.is_symlink() or host.exists():
                host.unlink()
            os.symlink(path, host)

    # --------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _launch_argv(self) -> list[str]:
        # - The overlay is mounted in a private mount namespace that lives exactly as long as nspawn, so a
        #   killed run leaves no mount on the host.
        # - --register=no --keep-unit: there is no machined/system bus here; without them nspawn fails
        #   with "Failed to open system bus". The price: the container's cgroups go below nspawn's own
        #   cgroup, which is why each node is started in a cgroup of its own (_spawn_in_cgroup).
        # - --network-bridge makes the veth (vb-<name> on the bridge, host0 inside) itself; the
        #   --network-interface= way needs udev.
        # - --link-journal=no, --timezone=off, --resolv-conf=off: nothing of the host leaks in.
        nspawn = [
            shutil.which("systemd-nspawn") or "/usr/bin/systemd-nspawn",
            f"--directory={self.dir / 'merged'}", "--boot", f"--machine={self.name}", f"--hostname={self.hostname}",
            f"--uuid={self.machine_id}", "--register=no", "--keep-unit", "--console=passive",
            "--link-journal=no", "--timezone=off", "--resolv-conf=off",
        ]  # fmt: skip
        nspawn.append(f"--network-bridge={self.bridge}" if self.bridge else "--private-network")
        for host_path, node_path in sorted(self.binds.items()):
            if re.search(r"[:\s]", host_path + node_path):
                raise NodesError(f"{self.name}: bind paths cannot contain ':' or spaces: {host_path} {node_path}")
            nspawn.append(f"--bind={host_path}:{node_path}")
        for part in (self.rootfs, self.upper, self.dir):
            if re.search(r"[,:\\\s]", str(part)):
                raise NodesError(f"{self.name}: overlay paths cannot contain ',', ':', '\\' or spaces: {part}")
        mount = 'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" && shift 4 && exec "$@"'
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh",
            str(self.rootfs), str(self.upper), str(self.dir / "work"), str(self.dir / "merged"), *nspawn,
        ]  # fmt: skip

    def launch(self) -> None:
        """Start booting and return at once; wait_booted() waits. start() does both."""
        if self.running:
            return
        self.prepare()
        self._forget_previous_run()
        self.boot_seconds = self.system_state = None
        self.leader = None
        self._launched_at = time.monotonic()
        with open(self.console_log, "ab") as out:
            self.proc = _spawn_in_cgroup(self.group, self._launch_argv(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def _forget_previous_run(self) -> None:
        # Left by an earlier run of this node that was killed: processes, its cgroups, the veth (the kernel
        # removes it with the network namespace, but not always before the next start), nspawn's dir.
        _cgroup_kill(self.group)
        if _link_exists(self.veth):
            _run(["ip", "link", "delete", self.veth], check=False)
        with contextlib.suppress(OSError):
            (NSPAWN_PROPAGATE / self.name).rmdir()

    def _find_leader(self) -> int | None:
        if self.proc is None:
            return None
        for kid in _children(self.proc.pid):
            if _comm(kid) == "systemd":
                return kid
        return None

    def wait_booted(self, timeout: float = 30) -> float:
        """Wait until the node's systemd finished booting (running or degraded); returns the seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise NodesError(f"{self.name}: systemd-nspawn exited ({code}) while booting:\n{self.console_tail()}")
            if self.leader is None:
                self.leader = self._find_leader()
            if self.leader is not None:
                state = self.exec(["systemctl", "is-system-running"], timeout=5, check=False).stdout.strip()
                if state in ("running", "degraded"):
                    self.system_state = state
                    self.boot_seconds = time.monotonic() - self._launched_at
                    return self.boot_seconds
            time.sleep(0.05)
        jobs = self.exec(["systemctl", "list-jobs", "--no-pager"], timeout=5, check=False).stdout if self.leader else ""
        raise NodesError(f"{self.name}: not booted after {timeout} s; pending jobs:\n{jobs}\n{self.console_tail()}")

    def start(self, timeout: float = 30) -> float:
        self.launch()
        return self.wait_booted(timeout)

    def stop(self, timeout: float = 15) -> None:
        """Shut the node down cleanly (as `poweroff` would); a node that does not stop in time is killed.

        Its state stays in the overlay: start() boots the same machine again.
        """
        if self.running and self.proc is not None:
            # nspawn answers SIGTERM by asking the container's systemd to halt (SIGRTMIN+3).
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def reboot(self, timeout: float = 30) -> float:
        """A clean shutdown and a new boot of the same machine (disk and files kept)."""
        self.stop()
        return self.start(timeout)

    def kill(self) -> None:
        """Pull the plug: SIGKILL everything of the node at once (also used to finish stop())."""
        _cgroup_kill(self.group)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self.leader = None
        # The veth would go with the node's network namespace, but the kernel tears that down
        # asynchronously (seconds after a SIGKILL); deleting our end removes both ends at once, so
        # "stopped" means "unreachable" when this returns.
        if _link_exists(self.veth):
            _run(["ip", "link", "delete", self.veth], check=False)
        deadline = time.monotonic() + 5
        while _link_exists(self.veth) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            (NSPAWN_PROPAGATE / self.name).rmdir()

    # --------------------------------------------------------------------------------- inside

    def exec(self, argv: list[str], timeout: float = 30, check: bool = True, input: str | None = None
             ) -> subprocess.CompletedProcess:  # fmt: skip
        """Run argv as root inside the node (all its namespaces), without ssh."""
        if self.leader is None:
            self.leader = self._find_leader()
        if self.leader is None:
            raise NodesError(f"{self.name}: not running")
        env = {"PATH": "/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        proc = subprocess.run(["nsenter", "-t", str(self.leader), "-a", *argv], input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, env=env, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise NodesError(f"{self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        return proc

    def ssh_argv(self, command: str | None = None, connect_timeout: int = 5) -> list[str]:
        """The ssh command line that logs into this node as core (for callers that run ssh themselves)."""
        if self.private_key_path is None or self.ip is None:
            raise NodesError(f"{self.name}: no ssh key or address")
        argv = [
            "ssh", "-F", "/dev/null", "-i", str(self.private_key_path), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}", f"{self.ssh_user}@{self.ip}",
        ]  # fmt: skip
        return argv + ([command] if command is not None else [])

    def ssh(self, command: str, timeout: float = 30, check: bool = False, input: str | None = None,
            connect_timeout: int = 5) -> subprocess.CompletedProcess:  # fmt: skip
        """Run `command` on the node over real ssh as core; returns the CompletedProcess (text)."""
        proc = subprocess.run(self.ssh_argv(command, connect_timeout), input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise NodesError(f"{self.name}: ssh {command!r} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    # --------------------------------------------------------------------------------- observation

    def pids(self) -> set[int]:
        return _cgroup_pids(self.group)

    def memory_pss(self) -> int:
        """Bytes of memory the node's processes use (proportional set size, shared pages split)."""
        return sum(_pss_bytes(pid) for pid in self.pids())

    def console_tail(self, chars: int = 3000) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def journal(self, unit: str | None = None, lines: int = 50) -> str:
        argv = ["journalctl", "--no-pager", "-n", str(lines)] + (["-u", unit] if unit else [])
        return self.exec(argv, check=False).stdout


def probe_boot(rootfs: Path, work_dir: Path, timeout: float = 30) -> str | None:
    """Boot one node without a network and power it off: None if that works, else why not."""
    for top in _cgroup_hierarchies():  # probes of runs that were killed while probing
        for old in top.glob("coreos-ec2-nodes-probe-*"):
            if not Path("/proc", old.name.rsplit("-", 1)[1]).exists():
                with contextlib.suppress(NodesError):
                    _cgroup_kill(old.name)
    group = f"coreos-ec2-nodes-probe-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="probe-", dir=work_dir))
    node = Node(f"probe-{os.getpid() % 100000}", None, rootfs=rootfs, state_dir=work, group=group)
    try:
        node.start(timeout)
        node.stop()
        return None
    except NodesError as exc:
        return f"systemd-nspawn cannot boot a node here: {exc}"
    finally:
        with contextlib.suppress(NodesError):
            node.kill()
            _cgroup_kill(group)
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ cluster


def _run_record(bridge: str) -> Path:
    return RUN_DIR / f"{bridge}.json"


_HELD_HERE: dict[str, "BridgeLock"] = {}


class BridgeLock:
    """One cluster per bridge at a time, host-wide: an exclusive flock on RUN_DIR/<bridge>.lock.

    The kernel drops the lock when its holder dies, so whoever gets it knows that anything left on the
    bridge belongs to a run that is over, and may remove it. A second run waits for the first.
    """

    def __init__(self, bridge: str):
        self.bridge = bridge
        self.path = RUN_DIR / f"{bridge}.lock"
        self.fd: int | None = None

    def acquire(self, timeout: float = 0, log: Callable[[str], None] | None = None) -> None:
        if self.fd is not None:
            return
        if self.bridge in _HELD_HERE:
            raise NodesError(f"bridge {self.bridge} is used by another cluster of this process; clean that up"
                             " first or give this one its own bridge=, subnet= and name_prefix=")  # fmt: skip
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise NodesError(f"bridge {self.bridge} is in use by another test run (pid {holder})") from None
                if log and not told:
                    log(f"waiting up to {timeout:.0f} s for bridge {self.bridge}, in use by pid {holder}")
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        _HELD_HERE[self.bridge] = self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # also drops the flock
            self.fd = None
            _HELD_HERE.pop(self.bridge, None)


def cleanup_stale(bridge: str = DEFAULT_BRIDGE, timeout: float = 0) -> list[str]:
    """Remove what a finished run on `bridge` left behind (it crashed, or was killed); idempotent.

    Fails if a live run holds the bridge (waits up to `timeout` for it). Returns what was found.
    """
    lock = BridgeLock(bridge)
    lock.acquire(timeout)
    try:
        return _remove_leftovers(bridge)
    finally:
        lock.release()


def _remove_leftovers(bridge: str) -> list[str]:
    """Only things named after the bridge are touched: the cgroup group coreos-ec2-nodes-<bridge> (every
    node and the host etcd run in it), the bridge and the links on it, the nspawn directories and the
    state directory the run record names. Call with the bridge's lock held."""
    found: list[str] = []
    group = f"coreos-ec2-nodes-{bridge}"
    record_path = _run_record(bridge)
    record: dict = {}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(record_path.read_text())
    pids = _cgroup_pids(group)
    if pids:
        found.append(f"{len(pids)} processes")
    _cgroup_kill(group)
    if any(p.exists() for p in _cgroup_group(group)):
        found.append(f"cgroup {group}")
    _cgroup_remove(group)
    for link in _links_on_bridge(bridge):
        found.append(f"link {link}")
        _run(["ip", "link", "delete", link], check=False)
    if _link_exists(bridge):
        found.append(f"bridge {bridge}")
        _run(["ip", "link", "delete", bridge], check=False)
    for name in record.get("nodes", []):
        veth = f"vb-{name}"
        if _link_exists(veth):
            found.append(f"link {veth}")
            _run(["ip", "link", "delete", veth], check=False)
        with contextlib.suppress(OSError):
            (NSPAWN_PROPAGATE / name).rmdir()
    owned = record.get("owned_dir")
    if owned and Path(owned).exists():
        found.append(f"state dir {owned}")
        shutil.rmtree(owned, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    return found


DiscoverySpec = Union[str, Callable[["Cluster"], str], None]


class Cluster:
    """N nodes on a private bridge, with etcd members joining through a discovery URL.

    discovery_url: a URL, or a callable given the cluster once the bridge is up (to mint a token on a
    service listening on `cluster.host_ip`), or None for a token on the cluster's own host etcd.
    extra_files / enable_units go into every node; node_files(name, ip) adds per-node files.
    Iterating the cluster, len() and [i] give the nodes.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        discovery_url: DiscoverySpec = None,
        extra_files: Mapping[str, FileSpec] | None = None,
        enable_units: Iterable[str] = (),
        node_files: Callable[[str, str], Mapping[str, FileSpec]] | None = None,
        etcd: bool = True,
        etcd_env: Mapping[str, str] | None = None,
        state_dir: str | Path | None = None,
        bridge: str = DEFAULT_BRIDGE,
        subnet: str = DEFAULT_SUBNET,
        name_prefix: str = "node",
        first_host: int = 11,
        packages: Iterable[str] = PACKAGES,
        rootfs: Path | None = None,
        boot_timeout: float = 60,
        lock_timeout: float = 900,
        log: Callable[[str], None] | None = None,
    ):
        self.n = n
        self.discovery_spec = discovery_url
        self.discovery_url: str | None = None
        self.extra_files = dict(extra_files or {})
        self.enable_units = list(enable_units)
        self.node_files = node_files
        self.etcd = etcd
        self.etcd_env = dict(etcd_env or {})
        self.net = Bridge(bridge, subnet)
        self.group = f"coreos-ec2-nodes-{bridge}"
        self.name_prefix = name_prefix
        self.first_host = first_host
        self.packages = tuple(packages)
        self.rootfs = Path(rootfs) if rootfs else None
        self.boot_timeout = boot_timeout
        self.log = log or (lambda message: None)
        self._owned_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else None
        self.nodes: list[Node] = []
        self.host_etcd: HostEtcd | None = None
        self.private_key_path: Path | None = None
        self.ssh_user = SSH_USER
        self.timings: dict[str, float] = {}
        self.lock_timeout = lock_timeout
        self._lock = BridgeLock(bridge)

    # The cluster as a sequence of its nodes.
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __enter__(self) -> "Cluster":
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def host_ip(self) -> str:
        return self.net.host_ip

    def ip_for(self, index: int) -> str:
        return str(self.net.network.network_address + self.first_host + index)

    # --------------------------------------------------------------------------------- bring-up

    def setup(self) -> None:
        """Everything but the nodes: stale leftovers gone, root file system, state dir, key, bridge."""
        if self.private_key_path is not None:
            return
        self._lock.acquire(self.lock_timeout, self.log)
        leftovers = _remove_leftovers(self.net.name)
        if leftovers:
            self.log(f"removed leftovers of an earlier run on {self.net.name}: {', '.join(leftovers)}")
        started = time.monotonic()
        self.rootfs = self.rootfs or ensure_rootfs(self.packages, log=self.log)
        self.timings["rootfs"] = time.monotonic() - started
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"coreos-ec2-nodes-{self.net.name}-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_record()
        self.private_key_path = make_ssh_key(self.state_dir / "ssh")
        self.net.create()

    def _write_record(self) -> None:
        record = _run_record(self.net.name)
        record.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "pid": os.getpid(),
            "owned_dir": str(self.state_dir) if self._owned_dir else None,
            "nodes": [node.name for node in self.nodes] + [self._name(i) for i in range(self.n)],
        }
        record.write_text(json.dumps(data) + "\n")

    def _name(self, index: int) -> str:
        return f"{self.name_prefix}-{index}"

    def start_host_etcd(self) -> HostEtcd:
        """A discovery etcd on the bridge address (one per cluster; stopped by cleanup())."""
        self.setup()
        if self.host_etcd is None:
            assert self.state_dir is not None
            self.host_etcd = HostEtcd(self.host_ip, self.state_dir / "host-etcd", self.group).start()
        return self.host_etcd

    def start(self) -> None:
        """Set up, then boot the n nodes in parallel and wait until systemd in each finished booting."""
        self.setup()
        if self.etcd and self.discovery_url is None:
            spec = self.discovery_spec
            if spec is None:
                self.discovery_url = self.start_host_etcd().new_token(self.n)
            else:
                self.discovery_url = spec(self) if callable(spec) else spec
        hosts = {self._name(i): self.ip_for(i) for i in range(self.n)}
        new = [self.make_node(self._name(i), self.ip_for(i), hosts=hosts) for i in range(len(self.nodes), self.n)]
        started = time.monotonic()
        for node in new:
            node.launch()
        for node in new:
            node.wait_booted(self.boot_timeout)
        self.timings["boot"] = time.monotonic() - started

    def make_node(self, name: str, ip: str, files: Mapping[str, FileSpec] | None = None,
                  enable: Iterable[str] = (), etcd: bool | None = None, hosts: Mapping[str, str] | None = None
                  ) -> Node:  # fmt: skip
        """A node on this cluster's bridge (not started); also for nodes beyond the first n."""
        self.setup()
        assert self.state_dir is not None and self.private_key_path is not None and self.rootfs is not None
        taken = {self.host_ip} | {node.ip for node in self.nodes}
        if ipaddress.ip_address(ip) not in self.net.network or ip in taken:
            raise NodesError(f"node {name}: {ip} is not a free address of {self.net.network}")
        if name in {node.name for node in self.nodes}:
            raise NodesError(f"node {name}: the cluster has a node of that name")
        all_files: dict[str, FileSpec] = dict(self.extra_files)
        if self.node_files:
            all_files.update(self.node_files(name, ip))
        all_files.update(files or {})
        units = list(self.enable_units) + list(enable)
        with_etcd = self.etcd if etcd is None else etcd
        if with_etcd:
            all_files.update(self.etcd_files(name, ip))
            units.insert(0, "etcd.service")
        node = Node(
            name, ip, rootfs=self.rootfs, state_dir=self.state_dir / name, group=self.group, bridge=self.net.name,
            prefixlen=self.net.network.prefixlen, authorized_key=Path(f"{self.private_key_path}.pub").read_text(),
            private_key_path=self.private_key_path, files=all_files, enable=units, hosts=hosts,
        )  # fmt: skip
        node.etcd = with_etcd
        self.nodes.append(node)
        self._write_record()
        return node

    def add_node(self, name: str, ip: str, **kw: object) -> Node:
        """make_node() and boot it."""
        node = self.make_node(name, ip, **kw)  # type: ignore[arg-type]
        node.start(self.boot_timeout)
        return node

    def etcd_files(self, name: str, ip: str) -> dict[str, FileSpec]:
        """etcd settings for a member at `ip`: Debian's unit reads /etc/default/etcd."""
        env = {
            "ETCD_NAME": name,
            "ETCD_DATA_DIR": "/var/lib/etcd/default",
            "ETCD_LISTEN_PEER_URLS": f"http://{ip}:{ETCD_PEER_PORT}",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{ip}:{ETCD_PEER_PORT}",
            "ETCD_LISTEN_CLIENT_URLS": f"http://{ip}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
            "ETCD_ADVERTISE_CLIENT_URLS": f"http://{ip}:{ETCD_CLIENT_PORT}",
            "ETCD_ENABLE_V2": "true",
        }
        if self.discovery_url:
            env["ETCD_DISCOVERY"] = self.discovery_url
        env.update(self.etcd_env)
        # etcd binds the node's address, so it must wait for systemd-networkd to have put it there.
        dropin = "[Unit]\nAfter=network-online.target\nWants=network-online.target\n"
        return {
            "/etc/default/etcd": "".join(f"{k}={v}\n" for k, v in env.items()),
            "/etc/systemd/system/etcd.service.d/10-nodes.conf": dropin,
        }

    # --------------------------------------------------------------------------------- readiness

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait until every running node takes ssh logins and, with etcd, every running member reports a
        healthy cluster of all members (GET /health and /v2/members). Returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        pending = {node.name: "not checked" for node in self.nodes if node.running}
        by_name = {node.name: node for node in self.nodes}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(pending))) as pool:
            while pending and time.monotonic() < deadline:
                problems = dict(zip(pending, pool.map(lambda name: self._not_ready(by_name[name]), list(pending))))
                pending = {name: why for name, why in problems.items() if why}
                if pending:
                    time.sleep(0.2)
        if pending:
            details = "; ".join(f"{name}: {why}" for name, why in pending.items())
            raise NodesError(f"nodes not ready after {timeout} s: {details}")
        self.timings["ready"] = time.monotonic() - started
        return self.timings["ready"]

    def _not_ready(self, node: Node) -> str | None:
        if not node.running:
            return f"stopped:\n{node.console_tail(1000)}"
        if not _port_open(node.ip or "", 22):
            return "sshd not listening on port 22"
        if node.etcd:
            members = self.etcd_members(node)
            expected = sum(1 for other in self.nodes if other.etcd)
            if members is None:
                return "etcd not answering on port 2379"
            if len(members) != expected:
                return f"etcd has {len(members)} of {expected} members"
            status, body = _http("GET", f"http://{node.ip}:{ETCD_CLIENT_PORT}/health")
            if status != 200 or json.loads(body or b"{}").get("health") != "true":
                return f"etcd unhealthy: HTTP {status} {body[:100]!r}"
        probe = node.ssh("true", timeout=15)
        if probe.returncode != 0:
            return f"ssh as {SSH_USER} failed: {probe.stderr.strip()}"
        return None

    def etcd_members(self, node: Node) -> list[dict] | None:
        """The members a node's etcd reports over the v2 API, or None when it does not answer."""
        try:
            status, body = _http("GET", f"http://{node.ip}:{ETCD_CLIENT_PORT}/v2/members", timeout=2)
        except OSError:
            return None
        if status != 200:
            return None
        return json.loads(body).get("members", [])

    # --------------------------------------------------------------------------------- teardown

    def cleanup(self) -> None:
        """Stop every node and remove everything the cluster made; safe to call more than once."""
        if self._lock.fd is None:  # never set up, or cleaned up already: the bridge may be another run's
            return
        errors: list[str] = []
        # Killed, not halted: the overlays are thrown away anyway, and etcd members halted together each
        # wait about 7 s trying to hand leadership to a peer that is going down too.
        for step in [node.kill for node in self.nodes] + [self._stop_host_etcd]:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep cleaning, report at the end
                errors.append(str(exc))
        try:
            _cgroup_kill(self.group)
            self.net.delete()
        except Exception as exc:  # noqa: BLE001
            errors.append(str(exc))
        if self._owned_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _run_record(self.net.name).unlink()
        self._lock.release()
        if errors:
            raise NodesError("cleanup incomplete: " + "; ".join(errors))

    def _stop_host_etcd(self) -> None:
        if self.host_etcd is not None:
            self.host_etcd.stop()
            self.host_etcd = None
