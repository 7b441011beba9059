# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox nodes' udevadm stand-in: /dev/disk/by-label and by-uuid links for disk images made with mkfs.

$UDEVADM_DEV_ROOT points the script at a tmp dir in which regular files count as devices, so no root and no
real block device is needed; blkid is the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UDEVADM = Path(__file__).resolve().parents[3] / "roles" / "sandbox" / "files" / "node-image" / "usr" / "bin" / "udevadm"
MKFS = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
BLKID = shutil.which("blkid") or "/usr/sbin/blkid"

pytestmark = pytest.mark.skipif(not (os.access(MKFS, os.X_OK) and os.access(BLKID, os.X_OK)),
                                reason="needs mkfs.ext4 and blkid (e2fsprogs, util-linux)")


def udevadm(dev: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, UDEVADM_DEV_ROOT=str(dev), UDEVADM_BLKID=BLKID)
    return subprocess.run(["sh", str(UDEVADM), *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def disk(dev: Path, name: str, label: str = None) -> str:
    """A disk image /dev/<name>, with an ext4 filesystem when a label is given; its UUID (or "")."""
    path = dev / name
    with open(path, "wb") as image:
        image.truncate(4 << 20)
    if label is None:
        return ""
    subprocess.run([MKFS, "-q", "-F", "-L", label, str(path)], check=True, capture_output=True, timeout=60)
    return subprocess.run([BLKID, "-p", "-s", "UUID", "-o", "value", str(path)], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def links(dev: Path, kind: str) -> dict:
    folder = dev / "disk" / kind
    return {link.name: os.readlink(link) for link in folder.iterdir()} if folder.is_dir() else {}


def test_settle_and_trigger_make_and_tidy_links(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    uuid_b = disk(dev, "xvdb", "ebs")
    uuid_c = disk(dev, "nvme1n1", "my data/x")
    disk(dev, "xvdf")  # no filesystem: no link
    (dev / "xvdb-not-a-device").mkdir()

    result = udevadm(dev, "settle", "--timeout=30")
    assert result.returncode == 0, result.stderr
    assert links(dev, "by-label") == {"ebs": "../../xvdb", "my\\x20data\\x2fx": "../../nvme1n1"}
    assert links(dev, "by-uuid") == {uuid_b: "../../xvdb", uuid_c: "../../nvme1n1"}
    assert (dev / "disk" / "by-label" / "ebs").resolve() == (dev / "xvdb").resolve()

    # a link this stand-in did not make, to a device it does not look at, stays
    (dev / "md0").touch()
    os.symlink("../../md0", dev / "disk" / "by-label" / "raid")
    # relabelled, removed and newly formatted devices
    uuid_b2 = disk(dev, "xvdb", "renamed")
    (dev / "nvme1n1").unlink()
    uuid_f = disk(dev, "xvdf", "fresh")

    result = udevadm(dev, "trigger", "--action=add")
    assert result.returncode == 0, result.stderr
    assert links(dev, "by-label") == {"renamed": "../../xvdb", "fresh": "../../xvdf", "raid": "../../md0"}
    assert links(dev, "by-uuid") == {uuid_b2: "../../xvdb", uuid_f: "../../xvdf"}
    assert uuid_b2 != uuid_b


def test_other_commands_are_refused(tmp_path):
    result = udevadm(tmp_path, "info", "/dev/xvdb")
    assert result.returncode == 1 and "not implemented by this stand-in" in result.stderr
    assert not (tmp_path / "disk").exists()
    result = udevadm(tmp_path, "--version")
    assert result.returncode == 0 and "stand-in of the coreos_ec2.cluster sandbox" in result.stdout
