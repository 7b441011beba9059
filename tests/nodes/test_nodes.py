# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test-node harness: pure helpers over tables, then real nodes.

Assertions about nodes look at the world from outside the harness: ssh with the generated key, etcd's
own HTTP API on the node addresses, the discovery registry on the host etcd, /sys/class/net, cgroupfs
and /proc, not what the harness reports about itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from . import harness

TESTS_DIR = Path(__file__).resolve().parents[1]


def http(method: str, url: str, data: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data.encode() if data else None, method=method)
    if data:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (orphans of a killed run are reaped by PID 1, later)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def members(node: harness.Node) -> dict[str, dict]:
    status, body = http("GET", f"http://{node.ip}:2379/v2/members")
    assert status == 200, body
    return {m["name"]: m for m in body["members"]}


# ------------------------------------------------------------------------------------------ pure

SOURCES_DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""

SECURITY_FIRST_DEB822 = """\
Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: https://mirror.example/debian/
Suites: bookworm
Components: main
"""

DISABLED_DEB822 = """\
Enabled: no
Types: deb
URIs: http://off.example/debian
Suites: bookworm
"""

LIST = """\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://list.example/debian bookworm main
deb http://list.example/debian-security bookworm-security main
"""

NODESOURCE_LIST = "deb https://deb.nodesource.com/node_20.x nodistro main\n"


@pytest.mark.parametrize(
    "files, expected",
    [
        ([("debian.sources", SOURCES_DEB822)], "http://deb.debian.org/debian"),
        ([("a.sources", SECURITY_FIRST_DEB822)], "https://mirror.example/debian"),
        ([("a.sources", DISABLED_DEB822), ("b.list", LIST)], "http://list.example/debian"),
        ([("nodesource.list", NODESOURCE_LIST), ("debian.sources", SOURCES_DEB822)], "http://deb.debian.org/debian"),
        ([("debian.sources.disabled", SOURCES_DEB822.replace("deb.debian.org", "x.example"))], harness.FALLBACK_MIRROR),
        ([], harness.FALLBACK_MIRROR),
    ],
    ids=["deb822", "skips-security-and-src", "disabled-stanza", "other-suites", "ignored-extension", "none"],
)
def test_debian_mirror_is_read_from_apt_sources(tmp_path, monkeypatch, files, expected):
    monkeypatch.delenv("COREOS_EC2_NODES_MIRROR", raising=False)
    paths = []
    for name, text in files:
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    assert harness.debian_mirror(paths) == expected


def test_debian_mirror_override(monkeypatch):
    monkeypatch.setenv("COREOS_EC2_NODES_MIRROR", "http://local.example/debian/")
    assert harness.debian_mirror([]) == "http://local.example/debian"


def test_rootfs_key_follows_packages_and_harness_version(monkeypatch):
    base = harness.rootfs_key(harness.PACKAGES)
    assert harness.rootfs_key(reversed(harness.PACKAGES)) == base  # order does not matter
    assert harness.rootfs_key((*harness.PACKAGES, "jq")) != base
    monkeypatch.setattr(harness, "HARNESS_VERSION", harness.HARNESS_VERSION + ".next")
    assert harness.rootfs_key(harness.PACKAGES) != base
    assert harness.rootfs_path(harness.PACKAGES).name == "rootfs-" + harness.rootfs_key(harness.PACKAGES)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
         {"WantedBy": ["multi-user.target"], "RequiredBy": [], "Alias": []}),
        ("[Install]\nWantedBy=a.target b.target\nWantedBy=c.target\nAlias=etcd2.service\n",
         {"WantedBy": ["a.target", "b.target", "c.target"], "RequiredBy": [], "Alias": ["etcd2.service"]}),
        ("[Install]\nWantedBy=a.target\nWantedBy=\nRequiredBy=x.target\n# WantedBy=b.target\n",
         {"WantedBy": [], "RequiredBy": ["x.target"], "Alias": []}),
        ("[Unit]\nWantedBy=not-install.target\n", {"WantedBy": [], "RequiredBy": [], "Alias": []}),
    ],
    ids=["plain", "several-and-alias", "empty-resets", "other-section"],
)  # fmt: skip
def test_install_targets(text, expected):
    assert harness.install_targets(text) == expected


@pytest.mark.parametrize("name", ["Node-0", "node_0", "-node", "node-", "a-name-too-long", ""])
def test_node_names_must_fit_an_interface_name(tmp_path, name):
    with pytest.raises(harness.NodesError):
        harness.Node(name, "10.213.0.11", rootfs=tmp_path, state_dir=tmp_path / "n", group="g")


def test_files_keep_the_image_owner_and_mode_of_existing_directories(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    image = tmp_path / "image"
    (image / "home" / "core").mkdir(parents=True)
    os.chown(image / "home" / "core", 500, 500)
    os.chmod(image / "home" / "core", 0o700)
    (image / "etc").mkdir()
    node = harness.Node("n0", "10.213.0.11", rootfs=image, state_dir=tmp_path / "n0", group="g")
    (node.upper).mkdir(parents=True)
    node.write_file("/home/core/.ssh/authorized_keys", ("ssh-ed25519 AAAA x\n", 0o600), uid=500, gid=500,
                    dir_mode=0o700)  # fmt: skip
    node.write_file("/opt/bin/tool", ("#!/bin/sh\n", 0o755))
    home = os.stat(node.upper / "home" / "core")
    assert (home.st_uid, home.st_mode & 0o777) == (500, 0o700)
    ssh_dir = os.stat(node.upper / "home" / "core" / ".ssh")
    assert (ssh_dir.st_uid, ssh_dir.st_mode & 0o777) == (500, 0o700)
    key = os.stat(node.upper / "home" / "core" / ".ssh" / "authorized_keys")
    assert (key.st_uid, key.st_mode & 0o777) == (500, 0o600)
    assert os.stat(node.upper / "opt" / "bin" / "tool").st_mode & 0o777 == 0o755
    # Directory links of the image are followed (bookworm: /lib -> usr/lib), as the node sees them.
    (image / "usr" / "lib").mkdir(parents=True)
    os.symlink("usr/lib", image / "lib")
    (image / "etc" / "alternatives").mkdir()
    os.symlink("/etc/alternatives", image / "etc" / "alt")
    node.write_file("/lib/systemd/system/x.service", "[Unit]\n")
    node.write_file("/etc/alt/y", "y")
    assert (node.upper / "usr" / "lib" / "systemd" / "system" / "x.service").read_text() == "[Unit]\n"
    assert (node.upper / "etc" / "alternatives" / "y").read_text() == "y"
    assert not (node.upper / "lib").exists() and not (node.upper / "etc" / "alt").exists()
    assert not list(image.rglob("authorized_keys")), "nothing may be written into the image"
    with pytest.raises(harness.NodesError):
        node.write_file("../escape", "x")


def test_host_problem_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(harness.os, "geteuid", lambda: 1000)
    assert "need root" in harness.host_problem()
    monkeypatch.setattr(harness.os, "geteuid", lambda: 0)
    monkeypatch.setattr(harness.shutil, "which", lambda tool: None if tool in ("systemd-nspawn", "ip") else "/x")
    assert harness.host_problem() == "test nodes need these Debian packages: iproute2 systemd-container"


# ------------------------------------------------------------------------------------------ real nodes

FLEETCTL = """\
#!/usr/bin/python3
# stand-in: proves python3 and /opt/bin on PATH
import socket
print(open("/etc/machine-id").read().strip(), socket.gethostname())
"""

HELLO_UNIT = """\
[Unit]
Description=An extra unit enabled before the first boot

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "hello from %H" > /run/hello'

[Install]
WantedBy=multi-user.target
"""


@pytest.mark.nodes
def test_three_nodes_boot_and_form_an_etcd_cluster_through_discovery(nodes_factory, nodes_rootfs):
    minted: dict[str, str] = {}

    def mint(cluster: harness.Cluster) -> str:
        # By hand, as a discovery service would: the size key under a fresh token, on the bridge address.
        etcd = cluster.start_host_etcd()
        url = f"{etcd.client_url}/v2/keys/_etcd/registry/{uuid.uuid4().hex}"
        status, body = http("PUT", url + "/_config/size", "value=3")
        assert status == 201, body
        minted["url"] = url
        return url

    cluster = nodes_factory(3, discovery_url=mint)

    assert [n.name for n in cluster] == ["node-0", "node-1", "node-2"]
    assert [n.ip for n in cluster] == ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
    assert minted["url"].startswith("http://10.213.0.1:")
    for node in cluster:
        out = node.ssh("id -un; hostname; cat /etc/machine-id; ip -4 -o addr show dev host0; sudo -n id -u")
        assert out.returncode == 0, out.stderr
        user, hostname, machine_id, addr, sudo_uid = out.stdout.splitlines()
        assert (user, hostname, machine_id, sudo_uid) == ("core", node.name, node.machine_id, "0")
        assert f"inet {node.ip}/24" in addr
        print(f"{node.name}: booted in {node.boot_seconds:.2f} s, {node.memory_pss() / 2**20:.0f} MiB PSS")
        assert node.system_state == "running"
        assert node.boot_seconds < 30
    assert len({n.machine_id for n in cluster}) == 3
    print(f"cluster: boot {cluster.timings['boot']:.2f} s, then ready in {cluster.timings['ready']:.2f} s")

    # etcd: every member sees the same three members, each at its node's address.
    expected = {n.name: f"http://{n.ip}:2380" for n in cluster}
    for node in cluster:
        seen = members(node)
        assert {name: m["peerURLs"] for name, m in seen.items()} == {k: [v] for k, v in expected.items()}
    # ...and they found each other through the token: all three registered there.
    status, body = http("GET", minted["url"])
    assert status == 200
    registered = sorted(n["value"] for n in body["node"]["nodes"] if not n.get("dir"))
    assert registered == sorted(f"{name}={url}" for name, url in expected.items())
    # A write through one member is read through another (v2 API, quorum read).
    status = http("PUT", f"http://{cluster[0].ip}:2379/v2/keys/harness/check", "value=from-node-0")[0]
    assert status in (200, 201)
    status, body = http("GET", f"http://{cluster[2].ip}:2379/v2/keys/harness/check?quorum=true")
    assert (status, body["node"]["value"]) == (200, "from-node-0")
    health = cluster[1].ssh("ETCDCTL_API=2 etcdctl cluster-health")
    assert "cluster is healthy" in health.stdout and health.stdout.count("is healthy:") == 3, health.stdout
    # Nodes reach each other on the bridge, not only the host.
    peer = cluster[0].ssh(f"curl -s --max-time 3 http://{cluster[2].ip}:2379/health")
    assert json.loads(peer.stdout)["health"] == "true"

    # The shared image stayed clean: identity and etcd data live in each node's overlay.
    assert (nodes_rootfs / "etc" / "machine-id").read_text() == ""
    assert not (nodes_rootfs / "etc" / "hostname").exists()
    assert not list((nodes_rootfs / "var" / "lib" / "etcd").rglob("member"))


@pytest.mark.nodes
def test_extra_files_and_units_are_in_every_node_before_boot(nodes_factory):
    cluster = nodes_factory(
        2,
        etcd=False,
        extra_files={"/opt/bin/fleetctl": (FLEETCTL, 0o755), "/etc/systemd/system/hello.service": HELLO_UNIT},
        enable_units=["hello.service"],
        node_files=lambda name, ip: {"/etc/node-address": f"{name} {ip}\n"},
    )
    for node in cluster:
        out = node.ssh("fleetctl; systemctl is-active hello.service; cat /run/hello /etc/node-address;"
                       " stat -c %a /opt/bin/fleetctl; systemctl is-enabled etcd.service || true")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"{node.machine_id} {node.name}",
            "active",
            f"hello from {node.name}",
            f"{node.name} {node.ip}",
            "755",
            "disabled",
        ]
    assert not port_open(cluster[0].ip, 2379), "etcd=False nodes run no etcd"


@pytest.mark.nodes
def test_a_stopped_node_is_unreachable_and_comes_back_as_the_same_member(nodes_factory):
    cluster = nodes_factory(3)
    down, up = cluster[1], cluster[0]
    member_id = members(up)[down.name]["id"]

    down.stop()
    assert not down.running
    assert not port_open(down.ip, 22) and not port_open(down.ip, 2379)
    refused = down.ssh("true", timeout=30, connect_timeout=3)
    assert refused.returncode == 255, refused
    # Two of three keep quorum: writes go on, and etcd itself reports the missing member.
    status = http("PUT", f"http://{up.ip}:2379/v2/keys/harness/while-down", "value=written")[0]
    assert status in (200, 201)
    health = up.ssh("ETCDCTL_API=2 etcdctl cluster-health")
    assert f"member {member_id} is unreachable" in health.stdout, health.stdout

    down.start()
    cluster.wait_ready()
    assert down.ssh("cat /etc/machine-id").stdout.strip() == down.machine_id
    assert members(down)[down.name]["id"] == member_id, "rejoined from its data dir, not as a new member"
    status, body = http("GET", f"http://{down.ip}:2379/v2/keys/harness/while-down?quorum=true")
    assert (status, body["node"]["value"]) == (200, "written")


def _leftovers(bridge: str, state_dir: Path, names: list[str]) -> list[str]:
    """Whatever of a cluster is still on the host, found without asking the harness."""
    found = []
    if Path("/sys/class/net", bridge).exists():
        found.append(f"bridge {bridge}")
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if n in {f"vb-{name}" for name in names}]
    for hierarchy in ("systemd", "unified"):
        group = Path("/sys/fs/cgroup", hierarchy, f"coreos-ec2-nodes-{bridge}")
        if group.exists():
            found.append(f"cgroup {group}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            mounts = (proc / "mountinfo").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in mounts:
            found.append(f"mount of {state_dir} seen by pid {proc.name}")
        if str(state_dir) in cmdline:
            found.append(f"process {proc.name}: {cmdline[:120]}")
    found += [f"nspawn dir {n}" for n in names if Path("/run/systemd/nspawn/propagate", n).exists()]
    if state_dir.exists():
        found.append(f"state dir {state_dir}")
    if Path(harness.RUN_DIR, f"{bridge}.json").exists():
        found.append("run record")
    return found


@pytest.mark.nodes
def test_cleanup_leaves_nothing_behind_and_can_be_repeated(nodes_factory):
    cluster = nodes_factory(2)
    state_dir, names = cluster.state_dir, [n.name for n in cluster]
    assert cluster.host_etcd is not None
    pids = set().union(*(n.pids() for n in cluster)) | {cluster.host_etcd.proc.pid}
    assert len(pids) > 10
    long_lived = [n.proc.pid for n in cluster] + [n.leader for n in cluster] + [cluster.host_etcd.proc.pid]
    live = _leftovers(cluster.net.name, state_dir, names)  # the check must see a live cluster
    assert {"bridge ce2br0", "link vb-node-0", "state dir " + str(state_dir), "run record"} <= set(live), live
    assert any(item.startswith("mount of") for item in live), live
    assert harness._links_on_bridge(cluster.net.name) == ["vb-node-0", "vb-node-1"]

    cluster.cleanup()
    cluster.cleanup()

    assert _leftovers(cluster.net.name, state_dir, names) == []
    assert [pid for pid in long_lived if alive(pid)] == []
    assert [pid for pid in pids if alive(pid) and "nodes" in Path(f"/proc/{pid}/cgroup").read_text()] == []


KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
from nodes import harness
cluster = harness.Cluster(2, rootfs=Path(sys.argv[1]))
cluster.start()
cluster.wait_ready()
pids = [n.proc.pid for n in cluster] + [n.leader for n in cluster] + [cluster.host_etcd.proc.pid]
print(json.dumps({"state_dir": str(cluster.state_dir), "pids": pids}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.nodes
def test_the_next_run_removes_what_a_killed_run_left(nodes_factory, nodes_rootfs):
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(nodes_rootfs)], cwd=TESTS_DIR, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180, check=False)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left = json.loads(killed.stdout.strip().splitlines()[-1])
    state_dir = Path(left["state_dir"])
    assert len(_leftovers(harness.DEFAULT_BRIDGE, state_dir, ["node-0", "node-1"])) >= 5
    assert all(alive(pid) for pid in left["pids"])

    cluster = nodes_factory(1, etcd=False)

    assert [pid for pid in left["pids"] if alive(pid)] == []
    assert not state_dir.exists()
    assert harness._links_on_bridge(cluster.net.name) == ["vb-node-0"]
    assert cluster[0].ssh("hostname").stdout.strip() == "node-0"
    cluster.cleanup()
    assert _leftovers(harness.DEFAULT_BRIDGE, state_dir, ["node-0", "node-1"]) == []
    assert _leftovers(harness.DEFAULT_BRIDGE, cluster.state_dir, ["node-0"]) == []


@pytest.mark.nodes
def test_a_node_is_made_from_a_name_an_address_and_files(nodes_factory):
    # The shape a sandbox instance needs: no etcd of the harness, its own address, its own files.
    cluster = nodes_factory(0, etcd=False)
    user_data = "#cloud-config\nhostname: sandbox-a\n"
    node = cluster.add_node("sb-a", "10.213.0.77", files={"/var/lib/instance/user-data": (user_data, 0o600)})
    cluster.wait_ready()
    out = node.ssh("hostname; ip -4 -o addr show dev host0; sudo cat /var/lib/instance/user-data")
    assert out.returncode == 0, out.stderr
    hostname, addr, *data = out.stdout.splitlines()
    assert hostname == "sb-a" and "inet 10.213.0.77/24" in addr
    assert "\n".join(data) + "\n" == user_data
    with pytest.raises(harness.NodesError, match="not a free address"):
        cluster.make_node("sb-b", "10.213.0.77")
    with pytest.raises(harness.NodesError, match="not a free address"):
        cluster.make_node("sb-b", "10.99.0.1")


@pytest.mark.nodes
def test_one_cluster_per_bridge_at_a_time(nodes_factory, nodes_rootfs):
    cluster = nodes_factory(1, etcd=False)
    with pytest.raises(harness.NodesError, match="another cluster of this process"):
        harness.Cluster(1, rootfs=nodes_rootfs).setup()
    assert cluster[0].ssh("true").returncode == 0, "the refused cluster touched nothing"

    # Another process holding a bridge keeps cleanup_stale() off it until that process is gone.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nodes import harness; harness.BridgeLock('ce2lk0').acquire();"
         " print('held', flush=True); time.sleep(60)"],
        cwd=TESTS_DIR, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(harness.NodesError, match=rf"in use by another test run \(pid {holder.pid}\)"):
            harness.cleanup_stale("ce2lk0")
    finally:
        holder.kill()
        holder.wait()
    assert harness.cleanup_stale("ce2lk0") == []
    (harness.RUN_DIR / "ce2lk0.lock").unlink()
