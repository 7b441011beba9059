# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What coreos_cloud_config generates, checked by the real tools rather than by our own reading.

1. Every unit and drop-in the user data writes, for each flavour, goes through
   `systemd-analyze verify --root=<fake root>`: systemd itself parses the files, resolves their
   dependencies (an ordering cycle fails the transaction) and checks that every Exec command exists.
   The fake root is Debian's own unit directory, plus stand-ins for the units the OS image ships and
   we only extend with drop-ins (etcd-member, flanneld, docker, etcd2, fleet: minimal copies shaped
   like Flatcar's and CoreOS's), plus the files write_files would create, plus empty executables for
   the binaries those images provide and Debian lacks (/usr/lib/flatcar/etcd-wrapper, docker, ...).
   Nothing is stubbed that the user data is supposed to provide itself, and the output must be
   empty: warnings (unknown keys, legacy paths) fail the test too. systemd-analyze checks only the
   first command of each Exec list (verify.c), so the test also checks that every other Exec*=
   command of the generated files exists in the fake root. Negative controls show the harness
   catches a misnamed mount unit and a missing binary.
2. The EBS prepare script runs for real against a loop-backed image: it formats once, a second run
   (the next boot) keeps a file written in between, and the device resolution (Xen twin, Nitro NVMe
   by id-ctrl vendor bytes, the unpartitioned-EBS-disk fallback) is exercised with a fake /dev and
   /sys whose entries point at the loop device. Loop devices are always detached.
3. The fleet install script runs against a stand-in `docker` that serves a fake image tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config import scripts
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.build import build_user_data
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    iter_unit_files,
    unit_names,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import (
    DEFAULT_FLEET_IMAGE,
    settings_from_params,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "cloud-config.example"
URL = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"
HOST_UNITS = Path("/usr/lib/systemd/system")

# Units the OS image ships that the user data extends with drop-ins or starts by name.
FLATCAR_OS_UNITS = {
    # flatcar/scripts coreos-overlay app-admin/etcd-wrapper/files/etcd-member.service (docker era)
    "etcd-member.service": """[Unit]
Description=etcd (System Application Container)
Wants=network-online.target network.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=all
Restart=always
RestartSec=10s
TimeoutStartSec=0
LimitNOFILE=40000
Environment="ETCD_IMAGE_URL=quay.io/coreos/etcd"
Environment="ETCD_IMAGE_TAG=v3.5.16"
Environment="ETCD_NAME=%m"
Environment="ETCD_USER=etcd"
Environment="ETCD_DATA_DIR=/var/lib/etcd"
Environment="ETCD_SSL_DIR=/etc/ssl/certs"
ExecStart=/usr/lib/flatcar/etcd-wrapper $ETCD_OPTS
ExecStop=/usr/bin/docker stop etcd-member
ExecStopPost=/usr/bin/docker rm etcd-member

[Install]
WantedBy=multi-user.target
""",
    # flatcar/scripts app-admin/flannel-wrapper/files/flanneld.service
    "flanneld.service": """[Unit]
Description=flannel - Network fabric for containers (System Application Container)
After=etcd-member.service
Requires=flannel-docker-opts.service

[Service]
Type=notify
Restart=always
RestartSec=10s
TimeoutStartSec=300
LimitNOFILE=40000
Environment="FLANNEL_IMAGE_TAG=v0.14.0"
Environment="FLANNEL_OPTS=--ip-masq=true"
EnvironmentFile=-/run/flannel/options.env
ExecStartPre=/sbin/modprobe ip_tables
ExecStartPre=/usr/bin/mkdir --parents /var/lib/flatcar /run/flannel
ExecStart=/usr/lib/flatcar/flannel-wrapper $FLANNEL_OPTS

[Install]
WantedBy=multi-user.target
""",
    "flannel-docker-opts.service": """[Unit]
Description=flannel docker export service
PartOf=flanneld.service
Before=docker.service

[Service]
Type=oneshot
ExecStart=/usr/lib/flatcar/flannel-wrapper -d /run/flannel/flannel_docker_opts.env -i
""",
    "docker.service": """[Unit]
Description=Docker Application Container Engine
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/bin/dockerd --host=fd:// $DOCKER_OPTS
""",
}
FLATCAR_OS_BINARIES = [
    "/usr/lib/flatcar/etcd-wrapper", "/usr/lib/flatcar/flannel-wrapper", "/usr/bin/etcdctl",
    "/usr/bin/docker", "/usr/bin/dockerd", "/usr/bin/mkdir", "/sbin/modprobe",
    # Not in the image: fleet-install.service fetches them at first boot, before fleet.service starts.
    "/opt/bin/fleetd", "/opt/bin/fleetctl",
]
COREOS_OS_UNITS = {
    "etcd2.service": """[Unit]
Description=etcd2
Conflicts=etcd.service

[Service]
Type=notify
Environment=ETCD_DATA_DIR=/var/lib/etcd2
Environment=ETCD_NAME=%m
ExecStart=/usr/bin/etcd2
Restart=always
""",
    "fleet.socket": """[Unit]
Description=Fleet API Socket
PartOf=fleet.service

[Socket]
ListenStream=/run/fleet.sock
SocketMode=0660
""",
    "fleet.service": """[Unit]
Description=fleet daemon
After=etcd2.service
Wants=fleet.socket
After=fleet.socket

[Service]
ExecStart=/usr/bin/fleetd
Restart=always
""",
    "flanneld.service": """[Unit]
Description=Network fabric for containers
After=etcd2.service

[Service]
Type=notify
ExecStart=/usr/lib/coreos/flannel-wrapper $FLANNEL_OPTS
Restart=always
""",
    "docker.service": FLATCAR_OS_UNITS["docker.service"],
}
COREOS_OS_BINARIES = [
    "/usr/bin/etcd2", "/usr/bin/fleetd", "/usr/lib/coreos/flannel-wrapper", "/usr/bin/etcdctl",
    "/usr/bin/dockerd", "/usr/bin/mkdir",
]
OS_IMAGE = {"flatcar": (FLATCAR_OS_UNITS, FLATCAR_OS_BINARIES), "coreos": (COREOS_OS_UNITS, COREOS_OS_BINARIES)}

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not HOST_UNITS.is_dir(),
    reason="systemd-analyze (Debian package systemd) is not installed",
)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def fake_root(tmp_path: Path, cfg: dict, flavor: str, skip_binaries=()) -> Path:
    """A directory tree that looks to systemd-analyze like a machine that booted this cloud-config."""
    root = tmp_path / f"root-{flavor}"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    os_units, os_binaries = OS_IMAGE[flavor]
    for name, text in os_units.items():
        _write(root / "usr/lib/systemd/system" / name, text)
    # coreos-cloudinit writes units and drop-ins to /etc/systemd/system (runtime: false).
    for rel, text in iter_unit_files(cfg):
        _write(root / "etc/systemd/system" / rel, text)
    for entry in cfg.get("write_files", []):
        _write(root / entry["path"].lstrip("/"), entry["content"], int(str(entry.get("permissions", "0644")), 8))
    for binary in os_binaries:
        if binary not in skip_binaries:
            _write(root / binary.lstrip("/"), "#!/bin/sh\nexit 0\n", 0o755)
    return root


EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload", "ExecCondition")


def exec_commands(cfg: dict) -> list[tuple[str, str]]:
    """(file, executable) of every Exec*= line in the units and drop-ins the user data writes."""
    found = []
    for rel, text in iter_unit_files(cfg):
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in EXEC_KEYS and value.strip():
                # Prefixes: - (ignore failure), @ (argv0), + ! !! (privileges), : (no env expansion).
                found.append((rel, value.strip().split()[0].lstrip("-@+!:")))
    return found


def verify(root: Path, names) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
        capture_output=True, text=True, timeout=120, check=False,
    )


def build(flavor: str, base: str | None = None, **params):
    params.setdefault("discovery_url", URL)
    settings = settings_from_params(dict(params, flavor=flavor))
    return build_user_data(settings, base, "config/cloud-config.example")


VARIANTS = [
    pytest.param("flatcar", True, {}, id="flatcar-example"),
    pytest.param("coreos", True, {}, id="coreos-example"),
    pytest.param("flatcar", False, {"fleet_metadata": {"region": "us-east-1", "role": "web"},
                                    "flannel_backend": "vxlan"}, id="flatcar-metadata"),
    pytest.param("flatcar", False, {
        "discovery_url": None, "discovery_token": "tok-0123456789", "discovery_endpoints": ["http://10.0.0.5:2379"],
        "fleet": False, "ebs": {"mount_point": "/media/my-ebs", "filesystem": "xfs", "label": "data"},
    }, id="flatcar-v3-discovery-xfs"),
    pytest.param("coreos", False, {"ebs": {"mount_point": "/var/lib/docker"}, "fleet": False}, id="coreos-docker-volume"),
]


@needs_systemd_analyze
@pytest.mark.parametrize("flavor, with_example, params", VARIANTS)
def test_every_generated_unit_passes_systemd_analyze_verify(tmp_path, flavor, with_example, params):
    base = EXAMPLE.read_text(encoding="utf-8") if with_example else None
    result = build(flavor, base, **params)
    names = unit_names(result.cloud_config)
    assert len(names) >= 2
    root = fake_root(tmp_path, result.cloud_config, flavor)
    run = verify(root, names)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr.strip() == "" and run.stdout.strip() == "", run.stdout + run.stderr
    commands = exec_commands(result.cloud_config)
    assert any(exe == "/usr/bin/etcdctl" for _rel, exe in commands)  # drop-in lines are seen
    for rel, exe in commands:
        target = root / exe.lstrip("/")
        assert exe.startswith("/") and target.is_file() and os.access(target, os.X_OK), f"{rel}: {exe}"


@needs_systemd_analyze
def test_verify_catches_a_misnamed_mount_unit(tmp_path):
    # Negative control: the mount unit's name must be the escaped mount point, systemd checks it.
    result = build("flatcar", ebs={"mount_point": "/media/my-ebs"})
    cfg = result.cloud_config
    for unit in cfg["coreos"]["units"]:
        if unit["name"] == "media-my\\x2debs.mount":
            unit["name"] = "media-my-ebs.mount"  # unescaped: means /media/my/ebs to systemd
    root = fake_root(tmp_path, cfg, "flatcar")
    run = verify(root, ["media-my-ebs.mount"])
    assert run.returncode != 0
    assert "match" in run.stderr.lower() and "media-my-ebs.mount" in run.stderr, run.stderr


@needs_systemd_analyze
def test_verify_catches_a_missing_binary(tmp_path):
    # Negative control: fleet.service must fail while fleetd is not (yet) in /opt/bin.
    result = build("flatcar")
    root = fake_root(tmp_path, result.cloud_config, "flatcar", skip_binaries={"/opt/bin/fleetd"})
    run = verify(root, ["fleet.service"])
    assert run.returncode != 0
    assert "/opt/bin/fleetd is not executable" in run.stderr, run.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("name", ["EBS_PREPARE_SCRIPT", "FLEET_INSTALL_SCRIPT"])
def test_scripts_pass_shellcheck(tmp_path, name):
    script = tmp_path / name.lower()
    _write(script, getattr(scripts, name), 0o755)
    run = _run(["shellcheck", "--shell=bash", str(script)])
    assert run.returncode == 0, run.stdout


# ------------------------------------------------------------------------------------------
# The EBS prepare script, for real
# ------------------------------------------------------------------------------------------

def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture
def loop_device(tmp_path):
    """A 64 MiB loop-backed disk, detached whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    if not all(shutil.which(t) for t in ("losetup", "blkid", "mkfs.ext4", "unshare", "mount")):
        pytest.skip("util-linux/e2fsprogs tools are missing")
    image = tmp_path / "ebs.img"
    with open(image, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    attach = _run(["losetup", "--find", "--show", str(image)])
    if attach.returncode != 0:
        pytest.skip(f"cannot attach a loop device here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        yield device
    finally:
        _run(["losetup", "-d", device])
    assert str(image) not in _run(["losetup", "-a"]).stdout


@pytest.fixture
def prepare(tmp_path):
    """Runs the EBS script as written to the machine, with an empty fake /dev and /sys for the NVMe scan."""
    script = tmp_path / "coreos-ebs-prepare"
    _write(script, scripts.EBS_PREPARE_SCRIPT, 0o755)
    devroot, sysroot = tmp_path / "fakedev", tmp_path / "fakesys"
    devroot.mkdir()
    sysroot.mkdir()

    def run(device, label="itest-ebs", fstype="ext4", path_prepend=None):
        env = dict(os.environ, EBS_WAIT_SECONDS="0", EBS_DEV_ROOT=str(devroot), EBS_SYS_ROOT=str(sysroot))
        if path_prepend:
            env["PATH"] = f"{path_prepend}:{env['PATH']}"
        return _run([str(script), str(device), label, fstype], env=env)

    run.devroot, run.sysroot = devroot, sysroot
    return run


def probe(device: str, tag: str) -> str:
    return _run(["blkid", "-p", "-s", tag, "-o", "value", device]).stdout.strip()


def in_private_mount(device: str, mountpoint: Path, command: str) -> subprocess.CompletedProcess:
    """Mount the device in a private mount namespace (nothing leaks to the host), run, unmount."""
    mountpoint.mkdir(exist_ok=True)
    script = f'mount "$1" "$2" || exit 99; cd "$2"; {command}; rc=$?; cd /; umount "$2"; exit $rc'
    return _run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", device, str(mountpoint)])


def test_ebs_prepare_formats_once_and_a_reboot_keeps_the_data(loop_device, prepare, tmp_path):
    assert probe(loop_device, "TYPE") == ""  # a fresh volume

    first = prepare(loop_device)
    assert first.returncode == 0, first.stderr
    assert f"formatting {loop_device}" in first.stderr
    assert probe(loop_device, "TYPE") == "ext4"
    assert probe(loop_device, "LABEL") == "itest-ebs"
    uuid = probe(loop_device, "UUID")

    wrote = in_private_mount(loop_device, tmp_path / "mnt", "echo precious > keep.txt && sync")
    assert wrote.returncode == 0, wrote.stderr

    second = prepare(loop_device)  # the next boot
    assert second.returncode == 0, second.stderr
    assert "not formatting" in second.stderr and "formatting /" not in second.stderr
    assert probe(loop_device, "UUID") == uuid

    read = in_private_mount(loop_device, tmp_path / "mnt", "cat keep.txt")
    assert read.returncode == 0, read.stderr
    assert read.stdout == "precious\n"


def test_ebs_prepare_leaves_a_partitioned_disk_alone(loop_device, prepare):
    # An MBR with one Linux partition: blkid -p sees a partition table, so nothing is formatted.
    mbr = bytearray(512)
    entry = bytes([0x00, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    with open(loop_device, "r+b") as disk:
        disk.write(mbr)
    assert probe(loop_device, "PTTYPE") == "dos"

    run = prepare(loop_device)
    assert run.returncode == 0, run.stderr
    assert "not formatting" in run.stderr
    assert probe(loop_device, "TYPE") == ""
    with open(loop_device, "rb") as disk:
        assert disk.read(512) == bytes(mbr)


def test_ebs_prepare_finds_the_xen_twin(loop_device, prepare):
    sdb, xvdb = prepare.devroot / "sdb", prepare.devroot / "xvdb"
    xvdb.symlink_to(loop_device)
    run = prepare(sdb)
    assert run.returncode == 0, run.stderr
    assert f"formatting {xvdb} ({sdb})" in run.stderr
    assert probe(loop_device, "LABEL") == "itest-ebs"


def _fake_nvme_disk(prepare, name: str, device: str, model: str, partitioned: bool = False) -> Path:
    node = prepare.devroot / name
    node.symlink_to(device)
    block = prepare.sysroot / "class/block" / name
    _write(block / "device/model", model + "\n")
    if partitioned:
        (block / f"{name}p1").mkdir()
    return node


def test_ebs_prepare_falls_back_to_the_unpartitioned_ebs_nvme_disk(loop_device, prepare):
    # Nitro without nvme-cli: instance storage and partitioned disks are passed over.
    _fake_nvme_disk(prepare, "nvme7n1", loop_device, "Amazon Elastic Block Store", partitioned=True)
    _fake_nvme_disk(prepare, "nvme8n1", loop_device, "Amazon EC2 NVMe Instance Storage")
    chosen = _fake_nvme_disk(prepare, "nvme9n1", loop_device, "Amazon Elastic Block Store")
    run = prepare(prepare.devroot / "sdf")
    assert run.returncode == 0, run.stderr
    assert f"formatting {chosen} ({prepare.devroot / 'sdf'})" in run.stderr


def test_ebs_prepare_reads_the_ebs_device_name_from_nvme_id_ctrl(loop_device, prepare, tmp_path):
    # nvme4n1 would win the fallback; nvme5n1 is the one EBS recorded as /dev/sdf (vendor bytes 3072+).
    _fake_nvme_disk(prepare, "nvme4n1", loop_device, "Amazon Elastic Block Store")
    wanted = _fake_nvme_disk(prepare, "nvme5n1", loop_device, "Amazon Elastic Block Store")
    fake_bin = tmp_path / "bin"
    _write(fake_bin / "nvme", """#!/bin/bash
# nvme id-ctrl -b DEV: 4096 bytes of controller data; EBS puts the attachment name at 3072.
[ "$1" = id-ctrl ] && [ "$2" = -b ] || exit 2
case $3 in *nvme5n1) name=/dev/sdf ;; *) name=sdg ;; esac
head -c 3072 /dev/zero; printf '%-32s' "$name"; head -c 992 /dev/zero
""", 0o755)
    run = prepare(prepare.devroot / "sdf", path_prepend=str(fake_bin))
    assert run.returncode == 0, run.stderr
    assert f"formatting {wanted} ({prepare.devroot / 'sdf'})" in run.stderr


def test_ebs_prepare_fails_without_a_device_and_formats_nothing(loop_device, prepare):
    run = prepare(prepare.devroot / "sdq")
    assert run.returncode == 1
    assert "no block device for" in run.stderr and "xvdq" in run.stderr
    assert probe(loop_device, "TYPE") == ""


# ------------------------------------------------------------------------------------------
# The fleet install script against a stand-in docker
# ------------------------------------------------------------------------------------------

FAKE_DOCKER = """#!/bin/bash
# Stand-in docker: the image's file tree is $FAKE_IMAGE_ROOT; every call is logged.
echo "$*" >> "$FAKE_DOCKER_LOG"
case $1 in
  pull) [ -d "$FAKE_IMAGE_ROOT" ] ;;
  create) echo cid-1234 ;;
  cp) src=${2#cid-1234:}; [ -f "$FAKE_IMAGE_ROOT$src" ] && cp "$FAKE_IMAGE_ROOT$src" "$3" ;;
  rm) exit 0 ;;
  *) exit 3 ;;
esac
"""


def _fleet_install(tmp_path):
    """The install script beside a fake docker that serves tmp_path/image; (script, image root, dest, log, env)."""
    image_root, dest, fake_bin = tmp_path / "image", tmp_path / "opt-bin", tmp_path / "bin"
    _write(fake_bin / "docker", FAKE_DOCKER, 0o755)
    script = tmp_path / "coreos-fleet-install"
    _write(script, scripts.FLEET_INSTALL_SCRIPT, 0o755)
    log = tmp_path / "docker.log"
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}", FLEET_BIN_DIR=str(dest),
               FAKE_IMAGE_ROOT=str(image_root), FAKE_DOCKER_LOG=str(log))
    return script, image_root, dest, log, env


@pytest.mark.parametrize("image_dir", ["/usr/local/bin", "/opt/fleet"])
def test_fleet_install_copies_both_binaries(tmp_path, image_dir):
    script, image_root, dest, log, env = _fleet_install(tmp_path)
    for binary in ("fleetd", "fleetctl"):
        _write(image_root / image_dir.lstrip("/") / binary, f"#!/bin/sh\necho {binary}\n", 0o644)

    run = _run([str(script), DEFAULT_FLEET_IMAGE], env=env)
    assert run.returncode == 0, run.stderr
    for binary in ("fleetd", "fleetctl"):
        installed = dest / binary
        assert installed.read_text() == f"#!/bin/sh\necho {binary}\n"
        assert stat.S_IMODE(installed.stat().st_mode) == 0o755
        assert _run([str(installed)]).stdout == f"{binary}\n"
    assert sorted(p.name for p in dest.iterdir()) == ["fleetctl", "fleetd"]  # no leftovers
    calls = log.read_text().splitlines()
    assert calls[0] == f"pull {DEFAULT_FLEET_IMAGE}" and calls[1] == f"create {DEFAULT_FLEET_IMAGE}"
    assert calls[-1] == "rm -f cid-1234"  # the container is removed


def test_fleet_install_fails_when_the_image_lacks_a_binary(tmp_path):
    script, image_root, dest, log, env = _fleet_install(tmp_path)
    _write(image_root / "usr/local/bin/fleetd", "#!/bin/sh\n", 0o755)
    run = _run([str(script), "example.invalid/fleet:broken"], env=env)
    assert run.returncode == 1
    assert "no fleetctl in example.invalid/fleet:broken" in run.stderr
    assert not (dest / "fleetctl").exists() and not (dest / ".fleetctl.new").exists()
    assert log.read_text().splitlines()[-1] == "rm -f cid-1234"
