# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EBS volumes of sandbox instances: sparse files in the sandbox state directory, attached to a node
through a loop device and shown inside it under the name a Xen machine (c4, m4) gives the attachment.

A volume's file lives as long as the volume: a stopped or rebooted instance keeps its data; a terminated
one loses the volumes whose mapping says DeleteOnTermination.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

GIB = 1024**3


class VolumeError(RuntimeError):
    """A volume file or its loop device could not be set up."""


def node_device(device_name: str) -> str:
    """The device a Xen instance shows for an attachment name: /dev/sdb -> /dev/xvdb, /dev/xvdc stays.

    EC2 documents that Xen machines rename sd[b-z] to xvd[b-z]; /dev/sda1 (the root) becomes /dev/xvda1.
    """
    match = re.fullmatch(r"/dev/(?:sd|xvd)([a-z]{1,2})(\d*)", device_name)
    if not match:
        raise VolumeError(f"unsupported device name {device_name!r} (expected /dev/sd[b-z] or /dev/xvd[b-z])")
    return f"/dev/xvd{match.group(1)}{match.group(2)}"


def volume_path(directory: Path, volume_id: str) -> Path:
    if not re.fullmatch(r"vol-[0-9a-f]{1,32}", volume_id):
        raise VolumeError(f"unexpected volume id {volume_id!r}")
    return Path(directory) / f"{volume_id}.img"


def ensure_file(directory: Path, volume_id: str, size_gib: int) -> Path:
    """The volume's sparse file, made (or grown, as ModifyVolume would) to size_gib; data kept."""
    path = volume_path(directory, volume_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    want = int(size_gib) * GIB
    with open(path, "ab") as handle:  # creates it if missing, never truncates
        if handle.tell() < want:
            handle.truncate(want)  # sparse: no block is written
    return path


def _losetup(*args: str) -> str:
    proc = subprocess.run(["losetup", *args], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise VolumeError(f"losetup {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def attached_loops(path: Path) -> list[str]:
    """Loop devices backed by `path` (e.g. left by a host process that was killed)."""
    out = _losetup("--associated", str(path), "--noheadings", "--output", "NAME")
    return [line.strip() for line in out.splitlines() if line.strip()]


def attach(path: Path) -> str:
    """A loop device for the file, reusing one already attached to it."""
    existing = attached_loops(path)
    if existing:
        return existing[0]
    return _losetup("--find", "--show", str(path))


def detach(path: Path) -> None:
    for loop in attached_loops(path):
        _losetup("--detach", loop)


def delete(path: Path) -> None:
    if path.exists():
        detach(path)
        os.unlink(path)


def loop_problem() -> str | None:
    """Why volumes cannot be attached here, or None."""
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control is missing; modprobe loop)"
    try:
        _losetup("--find")
    except (VolumeError, OSError) as exc:
        return f"no free loop device: {exc}"
    return None
