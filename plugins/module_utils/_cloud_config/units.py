# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The units and drop-ins the collection generates: etcd-member, flannel, the EBS volume and fleet.

`generate_cloud_config` assembles them (with the scripts they run) into the collection's own
cloud-config layer; `extras_cloud_config` makes the module's units/write_files options a layer too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import _normalize_unit
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.scripts import (
    EBS_PREPARE_SCRIPT,
    EBS_SCRIPT_PATH,
    FLEET_INSTALL_SCRIPT,
    FLEET_INSTALL_SCRIPT_PATH,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import (
    CloudConfigSettings,
    EbsSettings,
    format_fleet_metadata,
    validate_flannel_network,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


FLEET_ETCD_SERVERS = "http://127.0.0.1:2379"
# fleetctl's default endpoint is unix:///var/run/fleet.sock; /var/run links to /run, and systemd
# warns about socket paths below the legacy /var/run.
FLEET_SOCKET_PATH = "/run/fleet.sock"
FLANNEL_CONFIG_KEY = "/coreos.com/network/config"
ETCD_DROPIN_NAME = "20-clct-etcd-member.conf"
FLANNEL_DROPIN_NAME = "50-network-config.conf"


# --------------------------------------------------------------------------------------------
# systemd names
# --------------------------------------------------------------------------------------------

def systemd_escape_path(path: str) -> str:
    """Escape a path like `systemd-escape --path` (systemd's unit_name_path_escape).

    "/media/ebs" -> "media-ebs", "/" -> "-", "/media/my-ebs" -> "media-my\\x2debs".
    """
    if not isinstance(path, str) or not path:
        raise ValidationError("cannot escape an empty path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValidationError(f"path {path!r} is not normalized ('.' or '..' in it)")
    if not parts:
        return "-"
    out = []
    raw = "/".join(parts).encode("utf-8")
    for i, byte in enumerate(raw):
        char = chr(byte)
        if char == "/":
            out.append("-")
        elif (char.isascii() and char.isalnum()) or char in ":_" or (char == "." and i > 0):
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def mount_unit_name(mount_point: str) -> str:
    return systemd_escape_path(mount_point) + ".mount"


# --------------------------------------------------------------------------------------------
# Generated units, drop-ins and layers
# --------------------------------------------------------------------------------------------

def flannel_config_json(network: str, backend: str | None = None) -> str:
    """The value flanneld reads from /coreos.com/network/config."""
    config: dict[str, Any] = {"Network": str(validate_flannel_network(network))}
    if backend:
        config["Backend"] = {"Type": backend}
    return json.dumps(config)


def etcd_member_dropin(s: CloudConfigSettings) -> str:
    """Flatcar's etcd-member.service drop-in: image tag, v2 API, name, discovery and URLs.

    The discovery lines keep exactly the form Environment="ETCD_DISCOVERY=<url>" (or the
    _TOKEN/_ENDPOINTS pair): the discovery_token module reads a running cluster's user data back.
    $private_ipv4 is substituted by coreos-cloudinit before the file is written.
    """
    lines = [
        "[Service]",
        f'Environment="ETCD_IMAGE_TAG={s.effective_etcd_version}"',
        'Environment="ETCD_NAME=%m"',
    ]
    if s.etcd_v2_api:
        lines.append('Environment="ETCD_ENABLE_V2=true"')
    if s.v3_discovery:
        lines.append(f'Environment="ETCD_DISCOVERY_TOKEN={s.discovery_token}"')
        lines.append(f'Environment="ETCD_DISCOVERY_ENDPOINTS={",".join(s.discovery_endpoints)}"')
    else:
        lines.append(f'Environment="ETCD_DISCOVERY={s.discovery_url}"')
    lines += [
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379"',
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$private_ipv4:2380"',
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"',
        'Environment="ETCD_LISTEN_PEER_URLS=http://$private_ipv4:2380"',
    ]
    return "\n".join(lines) + "\n"


def flannel_dropin(s: CloudConfigSettings) -> str:
    """flanneld.service drop-in that stores the network config in etcd before flanneld starts.

    With the v2 API the key goes in with `etcdctl set` (flannel's etcd v2 registry); Flatcar's
    etcdctl speaks v3 unless told ETCDCTL_API=2. Without it (etcd >= 3.6) `etcdctl put` stores it
    in the v3 keyspace, which only a flannel that reads the v3 API finds.
    """
    value = flannel_config_json(s.flannel_network, s.flannel_backend)
    lines = []
    if s.flavor == "flatcar":
        lines += ["[Unit]", "Wants=etcd-member.service", "After=etcd-member.service", ""]
    lines.append("[Service]")
    if s.etcd_v2_api:
        lines.append('Environment="ETCDCTL_API=2"')
        lines.append(f"ExecStartPre=/usr/bin/etcdctl set {FLANNEL_CONFIG_KEY} '{value}'")
    else:
        lines.append('Environment="ETCDCTL_API=3"')
        lines.append(f"ExecStartPre=/usr/bin/etcdctl put {FLANNEL_CONFIG_KEY} '{value}'")
    return "\n".join(lines) + "\n"


def ebs_units(ebs: EbsSettings) -> list[dict[str, Any]]:
    mount_name = mount_unit_name(ebs.mount_point)
    prepare = (
        "[Unit]\n"
        f"Description=Give the EBS volume {ebs.device} a filesystem if it has none (never reformats)\n"
        f"Before={mount_name}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "TimeoutStartSec=5min\n"
        f"ExecStart={EBS_SCRIPT_PATH} {ebs.device} {ebs.label} {ebs.filesystem}\n"
    )
    mount = (
        "[Unit]\n"
        f"Description=EBS volume {ebs.device} at {ebs.mount_point}\n"
        "Requires=format-ebs.service\n"
        "After=format-ebs.service\n"
        "\n"
        "[Mount]\n"
        f"What=/dev/disk/by-label/{ebs.label}\n"
        f"Where={ebs.mount_point}\n"
        f"Type={ebs.filesystem}\n"
        # nofail drops the implicit Before=local-fs.target: format-ebs.service runs after
        # basic.target, so that ordering would be a cycle at boot (systemd.mount(5)).
        "Options=nofail\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return [
        {"name": "format-ebs.service", "content": prepare},
        {"name": mount_name, "command": "start", "enable": True, "content": mount},
    ]


def fleet_flatcar_units(s: CloudConfigSettings) -> list[dict[str, Any]]:
    metadata = format_fleet_metadata(s.fleet_metadata)
    install = (
        "[Unit]\n"
        f"Description=Install fleetd and fleetctl from {s.fleet_image}\n"
        "Documentation=https://github.com/coreos/fleet\n"
        "Requires=docker.service\n"
        "Wants=network-online.target\n"
        "After=docker.service network-online.target\n"
        # Either binary missing is enough to (re)fetch; once both are there this is skipped.
        "ConditionPathExists=|!/opt/bin/fleetd\n"
        "ConditionPathExists=|!/opt/bin/fleetctl\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "TimeoutStartSec=10min\n"
        f"ExecStart={FLEET_INSTALL_SCRIPT_PATH} {s.fleet_image}\n"
    )
    socket = (
        "[Unit]\n"
        "Description=fleet API socket\n"
        "PartOf=fleet.service\n"
        "\n"
        "[Socket]\n"
        f"ListenStream={FLEET_SOCKET_PATH}\n"
        "SocketMode=0660\n"
        # Flatcar has no fleet group; core is the login user fleetctl runs as.
        "SocketGroup=core\n"
        "\n"
        "[Install]\n"
        "WantedBy=sockets.target\n"
    )
    env = [f'Environment="FLEET_ETCD_SERVERS={FLEET_ETCD_SERVERS}"']
    if metadata:
        env.append(f'Environment="FLEET_METADATA={metadata}"')
    env.append('Environment="FLEET_PUBLIC_IP=$private_ipv4"')
    service = (
        "[Unit]\n"
        "Description=fleet daemon\n"
        "Documentation=https://github.com/coreos/fleet\n"
        "Requires=fleet-install.service\n"
        "Wants=etcd-member.service fleet.socket\n"
        "After=fleet-install.service etcd-member.service fleet.socket\n"
        "\n"
        "[Service]\n"
        + "\n".join(env) + "\n"
        # Runs as root on the host: it drives systemd over D-Bus as CoreOS's fleet did.
        "ExecStart=/opt/bin/fleetd\n"
        "Restart=always\n"
        "RestartSec=10s\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return [
        {"name": "fleet-install.service", "content": install},
        {"name": "fleet.socket", "command": "start", "enable": True, "content": socket},
        {"name": "fleet.service", "command": "start", "enable": True, "content": service},
    ]


def generate_cloud_config(s: CloudConfigSettings) -> dict[str, Any]:
    """The collection's own part of the cloud-config, drop-ins under the internal key `drop_ins`."""
    units: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    coreos: dict[str, Any] = {}

    if s.ebs.enabled:
        files.append({"path": EBS_SCRIPT_PATH, "permissions": "0755", "owner": "root", "content": EBS_PREPARE_SCRIPT})
        units += ebs_units(s.ebs)

    flannel_unit = {
        "name": "flanneld.service",
        "command": "start",
        "drop_ins": [{"name": FLANNEL_DROPIN_NAME, "content": flannel_dropin(s)}],
    }
    if s.flavor == "flatcar":
        units.append({
            "name": "etcd-member.service",
            "command": "start",
            "enable": True,
            "drop_ins": [{"name": ETCD_DROPIN_NAME, "content": etcd_member_dropin(s)}],
        })
        units.append(flannel_unit)
        if s.fleet:
            files.append({
                "path": FLEET_INSTALL_SCRIPT_PATH, "permissions": "0755", "owner": "root",
                "content": FLEET_INSTALL_SCRIPT,
            })
            units += fleet_flatcar_units(s)
    else:
        coreos["etcd2"] = {
            "discovery": s.discovery_url,
            "advertise-client-urls": "http://$private_ipv4:2379",
            "initial-advertise-peer-urls": "http://$private_ipv4:2380",
            "listen-client-urls": "http://0.0.0.0:2379",
            "listen-peer-urls": "http://$private_ipv4:2380",
        }
        units.append({"name": "etcd2.service", "command": "start"})
        units.append(flannel_unit)
        if s.fleet:
            fleet_section = {"public-ip": "$private_ipv4"}
            metadata = format_fleet_metadata(s.fleet_metadata)
            if metadata:
                fleet_section = {"metadata": metadata, "public-ip": "$private_ipv4"}
            coreos["fleet"] = fleet_section
            units.append({"name": "fleet.service", "command": "start"})

    coreos["units"] = units
    generated: dict[str, Any] = {}
    if s.hostname:
        generated["hostname"] = s.hostname
    if s.ssh_authorized_keys:
        generated["ssh_authorized_keys"] = [k.strip() for k in s.ssh_authorized_keys]
    generated["coreos"] = coreos
    generated["write_files"] = files
    return generated


def extras_cloud_config(s: CloudConfigSettings) -> dict[str, Any]:
    """The module's `units` and `write_files` options, as a cloud-config layer of their own."""
    extras: dict[str, Any] = {}
    if s.units:
        extras["coreos"] = {"units": [_normalize_unit(copy.deepcopy(u)) for u in s.units]}
    if s.write_files:
        extras["write_files"] = [copy.deepcopy(f) for f in s.write_files]
    return extras
