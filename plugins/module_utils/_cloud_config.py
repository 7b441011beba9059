# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the `#cloud-config` user data every machine of a cluster boots with.

The user's own base file (their units and files) is merged with what the collection generates: etcd
with the cluster's discovery setting, flannel's network config, fleet, and the EBS data volume. The
rule: generated settings win where they collide with the base file, and each overridden unit,
drop-in, file or key is named in a warning; base units and files that do not collide are kept as
they are. Nothing here talks to the outside world: it is text in, text out.

Two flavours of the OS read this user data with coreos-cloudinit:
- flatcar (Flatcar Container Linux): etcd runs as etcd-member.service (an etcd container whose image
  tag a drop-in pins), and there is no fleet any more, so fleetd and fleetctl are copied out of
  fleet's last container image into /opt/bin and run from a unit of our own.
- coreos (legacy CoreOS Container Linux): the built-in coreos.etcd2 and coreos.fleet sections and
  the etcd2/fleet services.

Flatcar's parser reads a unit's drop-ins as `drop_ins` (the yaml tag in coreos-cloudinit's
config/unit.go) and turns `-` into `_` in every key first (config.go NewCloudConfig), so both
spellings parse there; old CoreOS documented `drop-ins`. We accept either in a base file and emit
the flavour's own spelling.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import posixpath
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

try:
    import yaml

    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:  # the module reports it with missing_required_lib
    yaml = None
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()


FLAVORS = ("flatcar", "coreos")
DEFAULT_FLAVOR = "flatcar"
# etcd 3.5 is the last line with the v2 API (--enable-v2) that fleet, flannel's etcdctl `set` and the
# v2 discovery protocol need; 3.6 removed it and brought v3 discovery (--discovery-token).
DEFAULT_ETCD_VERSION = "v3.5.17"
DEFAULT_ETCD_V3_DISCOVERY_VERSION = "v3.6.11"
DEFAULT_FLANNEL_NETWORK = "10.1.0.0/16"
# fleet's last release; its Dockerfile ADDs fleetd and fleetctl to /usr/local/bin of an alpine image.
DEFAULT_FLEET_IMAGE = "quay.io/coreos/fleet:v1.0.0"
FLEET_ETCD_SERVERS = "http://127.0.0.1:2379"
# fleetctl's default endpoint is unix:///var/run/fleet.sock; /var/run links to /run, and systemd
# warns about socket paths below the legacy /var/run.
FLEET_SOCKET_PATH = "/run/fleet.sock"
FLANNEL_CONFIG_KEY = "/coreos.com/network/config"
EBS_SCRIPT_PATH = "/opt/bin/coreos-ebs-prepare"
FLEET_INSTALL_SCRIPT_PATH = "/opt/bin/coreos-fleet-install"
ETCD_DROPIN_NAME = "20-clct-etcd-member.conf"
FLANNEL_DROPIN_NAME = "50-network-config.conf"
DEFAULT_EBS = {
    "enabled": True,
    "device": "/dev/sdb",
    "filesystem": "ext4",
    "mount_point": "/media/ebs",
    "label": "coreos-ebs",
}
EBS_FILESYSTEMS = ("ext4", "xfs", "btrfs")
# EC2 rejects user data over 16 KB, counted on the raw text before base64.
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html
EC2_USER_DATA_LIMIT = 16384

UNIT_COMMANDS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart")
# Unit types systemd knows, plus the networkd files coreos-cloudinit also handles as units.
UNIT_TYPES = (
    "service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope",
    "network", "netdev", "link",
)
_UNIT_BOOL_FIELDS = ("enable", "mask", "runtime")
_UNIT_FIELDS = ("name", "command", "enable", "content", "mask", "runtime", "drop_ins")
_FILE_FIELDS = ("path", "content", "permissions", "owner", "encoding")
# systemd's unit-name.c: VALID_CHARS, and "@" only as the template/instance separator.
_UNIT_NAME_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9:_.\\-]+)(?:@(?P<instance>[A-Za-z0-9:_.\\@-]*))?\.(?P<type>[a-z]+)$"
)
_UNIT_NAME_MAX = 255
_DROPIN_NAME_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.conf$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_LABEL_MAX = {"ext4": 16, "xfs": 12, "btrfs": 255}
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@:-]*$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9._-]+)?(?:@sha256:[0-9a-f]{64})?$")
_ETCD_VERSION_RE = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?P<suffix>[-+][0-9A-Za-z.-]+)?$")
_FLANNEL_BACKEND_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_HOSTNAME_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Characters that would break out of Environment="..." or be read as a systemd specifier (%).
_UNSAFE_IN_UNIT_VALUE = set('"\\%\'`') | {" ", "\t", "\n", "\r"}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

@dataclass
class EbsSettings:
    enabled: bool = True
    device: str = DEFAULT_EBS["device"]
    filesystem: str = DEFAULT_EBS["filesystem"]
    mount_point: str = DEFAULT_EBS["mount_point"]
    label: str = DEFAULT_EBS["label"]


@dataclass
class CloudConfigSettings:
    """Everything the generated part of the user data depends on (the module's options)."""

    flavor: str = DEFAULT_FLAVOR
    discovery_url: str | None = None
    discovery_token: str | None = None
    discovery_endpoints: list[str] = field(default_factory=list)
    etcd_version: str | None = None
    flannel_network: str = DEFAULT_FLANNEL_NETWORK
    flannel_backend: str | None = None
    ebs: EbsSettings = field(default_factory=EbsSettings)
    fleet: bool = True
    fleet_metadata: dict[str, Any] = field(default_factory=dict)
    fleet_image: str = DEFAULT_FLEET_IMAGE
    units: list[dict[str, Any]] = field(default_factory=list)
    write_files: list[dict[str, Any]] = field(default_factory=list)
    ssh_authorized_keys: list[str] = field(default_factory=list)
    hostname: str | None = None

    @property
    def v3_discovery(self) -> bool:
        return bool(self.discovery_token)

    @property
    def effective_etcd_version(self) -> str:
        if self.etcd_version:
            return normalize_etcd_version(self.etcd_version)
        return DEFAULT_ETCD_V3_DISCOVERY_VERSION if self.v3_discovery else DEFAULT_ETCD_VERSION

    @property
    def etcd_v2_api(self) -> bool:
        """Whether etcd serves the v2 API: legacy CoreOS's etcd2 always does, etcd >= 3.6 never."""
        if self.flavor == "coreos":
            return True
        return etcd_version_tuple(self.effective_etcd_version) < (3, 6)


@dataclass
class CloudConfigResult:
    user_data: str
    cloud_config: dict[str, Any]
    size: int
    warnings: list[str]


def settings_from_params(params: Mapping[str, Any]) -> CloudConfigSettings:
    """Turn the module's parameters (None meaning "not given") into validated settings."""
    ebs_in = dict(DEFAULT_EBS)
    for key, value in (params.get("ebs") or {}).items():
        if value is not None:
            ebs_in[key] = value
    unknown = set(ebs_in) - set(DEFAULT_EBS)
    if unknown:
        raise ValidationError(f"ebs: unknown key(s) {', '.join(sorted(unknown))}")

    def _given(name: str, default: Any) -> Any:
        value = params.get(name)
        return default if value is None else value

    settings = CloudConfigSettings(
        flavor=_given("flavor", DEFAULT_FLAVOR),
        discovery_url=params.get("discovery_url") or None,
        discovery_token=params.get("discovery_token") or None,
        discovery_endpoints=list(params.get("discovery_endpoints") or []),
        etcd_version=params.get("etcd_version") or None,
        flannel_network=_given("flannel_network", DEFAULT_FLANNEL_NETWORK),
        flannel_backend=params.get("flannel_backend") or None,
        ebs=EbsSettings(**ebs_in),
        fleet=bool(_given("fleet", True)),
        fleet_metadata=dict(params.get("fleet_metadata") or {}),
        fleet_image=_given("fleet_image", DEFAULT_FLEET_IMAGE),
        units=[_drop_none(u) for u in (params.get("units") or [])],
        write_files=[_drop_none(f) for f in (params.get("write_files") or [])],
        ssh_authorized_keys=list(params.get("ssh_authorized_keys") or []),
        hostname=params.get("hostname") or None,
    )
    validate_settings(settings)
    return settings


def _drop_none(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Ansible fills unset suboptions with None; cloud-config should not carry them."""
    out = {}
    for key, value in entry.items():
        if value is None:
            continue
        if key == "drop_ins":
            value = [_drop_none(d) for d in value]
        out[key] = value
    return out


def normalize_etcd_version(version: str) -> str:
    """`3.5.17` or `v3.5.17` -> `v3.5.17` (quay.io/coreos/etcd tags carry the v)."""
    match = _ETCD_VERSION_RE.match(str(version).strip())
    if not match:
        raise ValidationError(f"etcd_version {version!r} is not a version like v3.5.17")
    return "v" + str(version).strip().lstrip("v")


def etcd_version_tuple(version: str) -> tuple[int, int, int]:
    match = _ETCD_VERSION_RE.match(str(version).strip())
    if not match:
        raise ValidationError(f"etcd_version {version!r} is not a version like v3.5.17")
    return int(match.group("major")), int(match.group("minor")), int(match.group("patch"))


def _check_unit_value(what: str, value: str, allow_dollar: bool = True) -> None:
    """Values we put inside Environment="..." or on an Exec line must not need quoting."""
    bad = sorted(set(value) & _UNSAFE_IN_UNIT_VALUE)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValidationError(f"{what} contains characters that cannot go into a systemd unit unquoted: {shown}")
    if not allow_dollar and "$" in value:
        raise ValidationError(f"{what} must not contain '$'")


def _check_http_url(what: str, url: str) -> None:
    # The URL itself stays out of the message: discovery URLs carry the cluster's token.
    if not isinstance(url, str) or not url:
        raise ValidationError(f"{what} must be a non-empty http(s) URL")
    _check_unit_value(what, url, allow_dollar=False)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"{what} must be an http:// or https:// URL with a host")
    if "," in url:
        raise ValidationError(f"{what} must not contain ','")


def validate_flannel_network(network: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(network), strict=True)
    except ValueError as exc:
        raise ValidationError(f"flannel_network {network!r} is not an IPv4 network in CIDR form: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network) or "/" not in str(network):
        raise ValidationError(f"flannel_network {network!r} is not an IPv4 network in CIDR form like 10.1.0.0/16")
    return net


def validate_settings(s: CloudConfigSettings) -> None:
    """Reject bad or incompatible settings before anything is generated."""
    if s.flavor not in FLAVORS:
        raise ValidationError(f"flavor {s.flavor!r} is not one of {', '.join(FLAVORS)}")

    # Discovery: exactly one protocol.
    if s.discovery_url and s.discovery_token:
        raise ValidationError("discovery_url (etcd v2 discovery) and discovery_token (etcd v3 discovery) exclude each other")
    if not s.discovery_url and not s.discovery_token:
        raise ValidationError("etcd needs a discovery setting: discovery_url, or discovery_token with discovery_endpoints")
    if s.discovery_url:
        _check_http_url("discovery_url", s.discovery_url)
        if s.discovery_endpoints:
            raise ValidationError("discovery_endpoints belongs to v3 discovery (discovery_token), not to discovery_url")
    else:
        token = s.discovery_token or ""
        _check_unit_value("discovery_token", token, allow_dollar=False)
        if "," in token or "/" in token:
            raise ValidationError("discovery_token must not contain ',' or '/'")
        if len(token) < 8:
            # Ansible masks a no_log value wherever it occurs in the results; a short token would
            # garble unrelated text, and could even turn up inside user_data_b64.
            raise ValidationError("discovery_token must be at least 8 characters long")
        if not s.discovery_endpoints:
            raise ValidationError("discovery_token needs discovery_endpoints, the v3 discovery service's etcd URLs")
        for i, endpoint in enumerate(s.discovery_endpoints):
            _check_http_url(f"discovery_endpoints[{i}]", endpoint)
        if s.flavor == "coreos":
            raise ValidationError(
                "v3 discovery (discovery_token) needs etcd 3.6 or later; legacy CoreOS Container Linux runs etcd2: "
                "use flavor flatcar or discovery_url"
            )

    version = s.effective_etcd_version  # validates the format
    if s.flavor == "flatcar":
        if s.v3_discovery and etcd_version_tuple(version) < (3, 6):
            raise ValidationError(
                f"v3 discovery (discovery_token) needs etcd 3.6 or later, but etcd_version is {version}"
            )
        if s.fleet and not s.etcd_v2_api:
            why = "v3 discovery needs etcd >= 3.6" if s.v3_discovery else f"etcd_version is {version}"
            raise ValidationError(
                f"fleet needs etcd's v2 API, which etcd 3.6 and later no longer have ({why}): "
                "set fleet to false, or use discovery_url with etcd 3.5"
            )

    validate_flannel_network(s.flannel_network)
    if s.flannel_backend is not None and not _FLANNEL_BACKEND_RE.match(str(s.flannel_backend)):
        raise ValidationError(f"flannel_backend {s.flannel_backend!r} is not a flannel backend type such as vxlan")

    validate_ebs(s.ebs)

    if s.fleet:
        format_fleet_metadata(s.fleet_metadata)  # validates
        if not _IMAGE_RE.match(str(s.fleet_image)):
            raise ValidationError(f"fleet_image {s.fleet_image!r} is not a container image reference")

    for i, key in enumerate(s.ssh_authorized_keys):
        if not isinstance(key, str) or not key.strip() or "\n" in key.strip():
            raise ValidationError(f"ssh_authorized_keys[{i}] must be one non-empty line")

    if s.hostname is not None:
        validate_hostname(s.hostname)

    for i, unit in enumerate(s.units):
        validate_unit(unit, f"units[{i}]")
    for i, entry in enumerate(s.write_files):
        validate_write_file(entry, f"write_files[{i}]")


def validate_hostname(hostname: str) -> None:
    name = str(hostname)
    if len(name) > 253 or not all(_HOSTNAME_LABEL_RE.match(label) for label in name.split(".")):
        raise ValidationError(f"hostname {hostname!r} is not a valid host name")


def validate_ebs(ebs: EbsSettings) -> None:
    if not ebs.enabled:
        return
    if not _SAFE_PATH_RE.match(ebs.device) or not ebs.device.startswith("/dev/"):
        raise ValidationError(f"ebs.device {ebs.device!r} must be a device path under /dev/ such as /dev/sdb")
    if ebs.filesystem not in EBS_FILESYSTEMS:
        raise ValidationError(f"ebs.filesystem {ebs.filesystem!r} is not one of {', '.join(EBS_FILESYSTEMS)}")
    if not _LABEL_RE.match(ebs.label) or len(ebs.label) > _LABEL_MAX[ebs.filesystem]:
        raise ValidationError(
            f"ebs.label {ebs.label!r} must be 1-{min(16, _LABEL_MAX[ebs.filesystem])} characters of "
            f"letters, digits, '-' and '_' for {ebs.filesystem}"
        )
    mount_point = ebs.mount_point
    if not _SAFE_PATH_RE.match(mount_point) or posixpath.normpath(mount_point) != mount_point or mount_point == "/":
        raise ValidationError(
            f"ebs.mount_point {mount_point!r} must be a normalized absolute path (letters, digits, '.', '_', '-', '@', ':') other than /"
        )
    if mount_point == "/usr" or mount_point.startswith("/usr/"):
        raise ValidationError(f"ebs.mount_point {mount_point!r} is on the read-only /usr")


def format_fleet_metadata(metadata: Mapping[str, Any]) -> str:
    """{"region": "us-east-1", "role": "web"} -> "region=us-east-1,role=web" (fleet's metadata form).

    Keys are sorted so the same metadata always renders the same user data. fleet splits the string
    on ',' and each pair on its first '=' (config.go ParseMetadata), hence the checks.
    """
    pairs = []
    for key in sorted(metadata, key=str):
        value = metadata[key]
        if isinstance(value, bool):
            value = "true" if value else "false"
        if value is None or isinstance(value, (dict, list, tuple)):
            raise ValidationError(f"fleet_metadata[{key!r}] must be a string or a number")
        key_s, value_s = str(key).strip(), str(value).strip()
        if not key_s or "=" in key_s or "," in key_s:
            raise ValidationError(f"fleet_metadata key {key!r} must be non-empty without '=' or ','")
        if "," in value_s:
            raise ValidationError(f"fleet_metadata[{key!r}] must not contain ','")
        _check_unit_value(f"fleet_metadata key {key!r}", key_s)
        _check_unit_value(f"fleet_metadata[{key!r}]", value_s)
        pairs.append(f"{key_s}={value_s}")
    return ",".join(pairs)


def flannel_config_json(network: str, backend: str | None = None) -> str:
    """The value flanneld reads from /coreos.com/network/config."""
    config: dict[str, Any] = {"Network": str(validate_flannel_network(network))}
    if backend:
        config["Backend"] = {"Type": backend}
    return json.dumps(config)


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


def unit_name_problem(name: Any) -> str | None:
    """Why `name` is not a valid systemd unit name, or None when it is."""
    if not isinstance(name, str) or not name:
        return "the name must be a non-empty string"
    if len(name) > _UNIT_NAME_MAX:
        return f"the name is longer than {_UNIT_NAME_MAX} characters"
    match = _UNIT_NAME_RE.match(name)
    if not match:
        return "the name must be NAME.TYPE, NAME@.TYPE or NAME@INSTANCE.TYPE of letters, digits and ':_.\\-'"
    if match.group("type") not in UNIT_TYPES:
        return f"'.{match.group('type')}' is not a unit type ({', '.join(UNIT_TYPES)})"
    return None


def validate_unit_name(name: Any, where: str = "unit") -> None:
    problem = unit_name_problem(name)
    if problem:
        raise ValidationError(f"{where}: {name!r} is not a valid systemd unit name: {problem}")


def validate_unit(unit: Any, where: str) -> None:
    """One entry of coreos.units (drop-ins already under `drop_ins`, or still `drop-ins`)."""
    if not isinstance(unit, Mapping):
        raise ValidationError(f"{where} must be a mapping with at least a name")
    name = unit.get("name")
    validate_unit_name(name, where)
    where = f"{where} ({name})"
    command = unit.get("command")
    if command is not None and command not in UNIT_COMMANDS:
        raise ValidationError(f"{where}: command {command!r} is not one of {', '.join(UNIT_COMMANDS)}")
    for key in _UNIT_BOOL_FIELDS:
        if key in unit and not isinstance(unit[key], bool):
            raise ValidationError(f"{where}: {key} must be true or false, not {unit[key]!r}")
    if "content" in unit and not isinstance(unit["content"], str):
        raise ValidationError(f"{where}: content must be a string")
    for key in ("drop_ins", "drop-ins"):
        if key not in unit:
            continue
        dropins = unit[key]
        if not isinstance(dropins, list):
            raise ValidationError(f"{where}: {key} must be a list")
        for j, dropin in enumerate(dropins):
            if not isinstance(dropin, Mapping):
                raise ValidationError(f"{where}: {key}[{j}] must be a mapping with name and content")
            dname = dropin.get("name")
            if not isinstance(dname, str) or not _DROPIN_NAME_RE.match(dname):
                raise ValidationError(f"{where}: drop-in name {dname!r} must be a file name ending in .conf")
            if not isinstance(dropin.get("content"), str):
                raise ValidationError(f"{where}: drop-in {dname} needs its content as a string")


def validate_write_file(entry: Any, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValidationError(f"{where} must be a mapping with at least a path")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValidationError(f"{where}: path {path!r} must be an absolute path")
    if posixpath.dirname(posixpath.normpath(path)).startswith("/usr"):
        # coreos-cloudinit's validator rejects these too: /usr is read-only on both flavours.
        raise ValidationError(f"{where}: {path} is on the read-only /usr")
    if "permissions" in entry:
        perms = entry["permissions"]
        if isinstance(perms, bool) or not re.match(r"^0?[0-7]{3,4}$", str(perms)):
            raise ValidationError(f"{where} ({path}): permissions {perms!r} must be octal like '0644'")


# --------------------------------------------------------------------------------------------
# Generated units and files
# --------------------------------------------------------------------------------------------

# Runs at every boot (coreos-cloudinit starts it each time), so it must never format twice: it
# formats only when `blkid -p` finds no filesystem or partition table. EBS_DEV_ROOT/EBS_SYS_ROOT
# exist so tests can point the NVMe scan at a fake /dev and /sys instead of the host's disks.
EBS_PREPARE_SCRIPT = r"""#!/bin/bash
# coreos-ebs-prepare DEVICE LABEL FSTYPE: find the EBS volume attached as DEVICE and give it a
# filesystem, only when it has none (a reboot must never lose the volume's data).
set -euo pipefail
want=${1:?usage: coreos-ebs-prepare DEVICE LABEL FSTYPE} label=${2:?label} fstype=${3:-ext4}
wait=${EBS_WAIT_SECONDS:-120} devroot=${EBS_DEV_ROOT:-/dev} sysroot=${EBS_SYS_ROOT:-/sys}
name=${want##*/} dir=${want%/*} twin=
case $name in sd*) twin=$dir/xvd${name#sd} ;; xvd*) twin=$dir/sd${name#xvd} ;; esac
log() { echo "coreos-ebs-prepare: $*" >&2; }
# Nitro: EBS records the attachment name in the vendor area (bytes 3072+) of NVMe id-ctrl.
ebs_name() {
  command -v nvme >/dev/null 2>&1 || return 1
  local n
  n=$(nvme id-ctrl -b "$1" 2>/dev/null | tail -c +3073 | head -c 32 | tr -d '\0 ') || return 1
  echo "${n#/dev/}"
}
root_disk() {
  local src
  src=$(findmnt -no SOURCE / 2>/dev/null) || return 0
  lsblk -no PKNAME "$src" 2>/dev/null | head -n1 || true
}
resolve() {
  local d n base root found=()
  for d in "$want" $twin; do [ -b "$d" ] && { echo "$d"; return 0; }; done
  for d in "$devroot"/nvme*n1; do
    [ -b "$d" ] || continue
    n=$(ebs_name "$d") || continue
    if [ "$n" = "$name" ] || { [ -n "$twin" ] && [ "$n" = "${twin##*/}" ]; }; then echo "$d"; return 0; fi
  done
  root=$(root_disk)
  for d in "$devroot"/nvme*n1; do
    base=${d##*/}
    if [ ! -b "$d" ] || [ "$base" = "$root" ]; then continue; fi
    grep -qs "Amazon Elastic Block Store" "$sysroot/class/block/$base/device/model" || continue
    compgen -G "$sysroot/class/block/$base/${base}p*" >/dev/null && continue
    found+=("$d")
  done
  [ "${#found[@]}" -gt 0 ] || return 1
  [ "${#found[@]}" -eq 1 ] || log "several unpartitioned EBS NVMe disks (${found[*]}); taking ${found[0]}"
  echo "${found[0]}"
}
for ((i = 0; ; i++)); do
  dev=$(resolve) && break
  if [ "$i" -ge "$wait" ]; then log "no block device for $want${twin:+ or $twin} (nor an EBS NVMe disk) after ${wait}s"; exit 1; fi
  sleep 1
done
# blkid also says "nothing found" when it cannot read the device: make sure it can.
dd if="$dev" of=/dev/null bs=4096 count=1 status=none
rc=0; blkid -p "$dev" >/dev/null 2>&1 || rc=$?
case $rc in
  0) log "$dev ($want) already holds a filesystem or partition table; not formatting" ;;
  2) log "formatting $dev ($want) as $fstype with label $label"
     "mkfs.$fstype" -L "$label" "$dev"
     if command -v udevadm >/dev/null 2>&1; then udevadm settle --timeout=30 || true; fi ;;
  *) log "blkid -p $dev failed (exit $rc); refusing to format"; exit 1 ;;
esac
"""

# Flatcar ships no fleet: copy fleetd and fleetctl out of fleet's last image once.
FLEET_INSTALL_SCRIPT = r"""#!/bin/bash
# coreos-fleet-install IMAGE: copy fleetd and fleetctl out of fleet's container image into /opt/bin.
set -euo pipefail
image=${1:?usage: coreos-fleet-install IMAGE} dest=${FLEET_BIN_DIR:-/opt/bin}
mkdir -p "$dest"
# First boot may come before the network is fully up: a few bounded tries (unit timeout: 10 min).
for try in 1 2 3 4 5; do
  docker pull "$image" && break
  [ "$try" -lt 5 ] || exit 1
  sleep $((try * 10))
done
cid=$(docker create "$image")
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
for bin in fleetd fleetctl; do
  rm -f "$dest/.$bin.new"
  # fleet v1.0.0's Dockerfile puts them in /usr/local/bin; /opt/fleet for images built otherwise.
  for src in /usr/local/bin /opt/fleet; do
    docker cp "$cid:$src/$bin" "$dest/.$bin.new" 2>/dev/null && break
  done
  [ -f "$dest/.$bin.new" ] || { echo "coreos-fleet-install: no $bin in $image" >&2; exit 1; }
  chmod 0755 "$dest/.$bin.new"
  mv -f "$dest/.$bin.new" "$dest/$bin"
done
"""


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


# --------------------------------------------------------------------------------------------
# Base file: load, merge, render
# --------------------------------------------------------------------------------------------

def _yaml_loader() -> type:
    """A safe loader that also rejects duplicate keys (PyYAML silently keeps the last one)."""

    class _Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
        loader.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                    )
            except TypeError:
                pass  # unhashable keys fail below with PyYAML's own message
            seen[key] = True
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return _Loader


def _yaml_dumper() -> type:
    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: cloudinit users read this
            return True

    def represent_str(dumper: Any, data: str) -> Any:
        # Multi-line strings (units, scripts) as literal blocks, as people write cloud-config.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Dumper.add_representer(str, represent_str)
    return _Dumper


def _require_yaml() -> None:
    if not HAS_YAML:
        raise ValidationError("PyYAML is required to build cloud-config")


def parse_cloud_config(text: str, source: str = "cloud-config") -> dict[str, Any]:
    """Parse cloud-config text; errors name `source` and the 1-based line of the problem."""
    _require_yaml()
    if not isinstance(text, str):
        raise ValidationError(f"{source}: cloud-config must be text")
    first_line = text.split("\n", 1)[0].rstrip()
    if first_line != "#cloud-config":
        # coreos-cloudinit's IsCloudConfig: anything else is run as a script or ignored.
        raise ValidationError(f"{source}: line 1 must be '#cloud-config' (coreos-cloudinit ignores the file otherwise)")
    try:
        data = yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown line"
        problem = exc.problem or exc.context or "invalid YAML"
        # An unclosed bracket or quote is reported at the end of the file; say where it started.
        context = ""
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise ValidationError(f"{source}: invalid YAML at {where}: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: the top level must be a mapping of cloud-config keys, not a {type(data).__name__}")
    return data


def load_base(text: str, source: str) -> dict[str, Any]:
    """Parse and check the base file's structure; drop-ins land under `drop_ins` whatever the spelling."""
    data = parse_cloud_config(text, source)
    coreos_key = _find_key(data, "coreos")
    if coreos_key is not None:
        coreos = data[coreos_key]
        if coreos is None:
            coreos = data[coreos_key] = {}
        if not isinstance(coreos, dict):
            raise ValidationError(f"{source}: coreos must be a mapping")
        units_key = _find_key(coreos, "units")
        if units_key is not None:
            units = coreos[units_key]
            if units is None:
                units = coreos[units_key] = []
            if not isinstance(units, list):
                raise ValidationError(f"{source}: coreos.units must be a list")
            for i, unit in enumerate(units):
                validate_unit(unit, f"{source}: coreos.units[{i}]")
                units[i] = _normalize_unit(unit)
    files_key = _find_key(data, "write_files")
    if files_key is not None:
        files = data[files_key]
        if files is None:
            files = data[files_key] = []
        if not isinstance(files, list):
            raise ValidationError(f"{source}: write_files must be a list")
        for i, entry in enumerate(files):
            validate_write_file(entry, f"{source}: write_files[{i}]")
    keys_key = _find_key(data, "ssh_authorized_keys")
    if keys_key is not None and not isinstance(data[keys_key], (list, type(None))):
        raise ValidationError(f"{source}: ssh_authorized_keys must be a list")
    return data


def _norm(key: Any) -> Any:
    # coreos-cloudinit replaces '-' with '_' in every key before matching (config.go).
    return key.replace("-", "_") if isinstance(key, str) else key


def _find_key(mapping: Mapping[Any, Any], key: str) -> Any:
    for existing in mapping:
        if _norm(existing) == _norm(key):
            return existing
    return None


def _normalize_unit(unit: Mapping[str, Any]) -> dict[str, Any]:
    """Unit keys in their underscore form; `drop-ins` and `drop_ins` merged into `drop_ins`."""
    out: dict[str, Any] = {}
    dropins: list[Any] = []
    has_dropins = False
    for key, value in unit.items():
        if _norm(key) == "drop_ins":
            has_dropins = True
            dropins.extend(value or [])
        else:
            out[_norm(key)] = value
    if has_dropins:
        out["drop_ins"] = dropins
    return out


def merge_cloud_config(
    base: Mapping[str, Any], over: Mapping[str, Any], over_label: str, base_label: str = "the base file"
) -> tuple[dict[str, Any], list[str]]:
    """Lay `over` on `base`: `over` wins where they collide, everything else of `base` is kept.

    Units merge by name (field by field; drop-ins by name), files by path, coreos sections key by
    key, ssh_authorized_keys as a union. Units and files of `over` come first, then the rest of
    `base` in its own order. Returns the result and one warning per overridden entry, naming it
    but never its value (values may hold discovery tokens).
    """
    result: dict[str, Any] = copy.deepcopy(dict(base))
    warnings: list[str] = []

    def note(what: str) -> None:
        warnings.append(f"{what} from {base_label} is replaced by {over_label}")

    for key, value in over.items():
        existing = _find_key(result, key)
        if existing is not None and existing != key:
            result[key] = result.pop(existing)  # adopt our spelling, keep the value for merging
        if key == "coreos":
            result["coreos"] = _merge_coreos(result.get("coreos") or {}, value, note)
        elif key == "write_files":
            result["write_files"] = _merge_by(result.get("write_files") or [], value, "path", "write_files", note)
        elif key == "ssh_authorized_keys":
            merged = list(result.get("ssh_authorized_keys") or [])
            merged += [k for k in value if k not in merged]
            result["ssh_authorized_keys"] = merged
        else:
            if key in result and result[key] != value:
                note(key)
            result[key] = copy.deepcopy(value)
    return result, warnings


def _merge_by(base_list: list, over_list: list, id_key: str, where: str, note: Any) -> list:
    by_id = {entry.get(id_key): entry for entry in base_list if isinstance(entry, Mapping)}
    out = []
    for entry in over_list:
        old = by_id.pop(entry.get(id_key), None)
        if old is not None and old != entry:
            note(f"{where} {entry.get(id_key)}")
        out.append(copy.deepcopy(entry))
    taken = {entry.get(id_key) for entry in over_list}
    out += [entry for entry in base_list if not (isinstance(entry, Mapping) and entry.get(id_key) in taken)]
    return out


def _merge_coreos(base: dict[str, Any], over: Mapping[str, Any], note: Any) -> dict[str, Any]:
    result = dict(base)
    for key, value in over.items():
        existing = _find_key(result, key)
        if existing is not None and existing != key:
            result[key] = result.pop(existing)
        if key == "units":
            result["units"] = _merge_units(result.get("units") or [], value, note)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            section = dict(result[key])
            for sub, sub_value in value.items():
                old_key = _find_key(section, sub)
                if old_key is not None:
                    old = section.pop(old_key)
                    if old != sub_value:
                        note(f"coreos.{key}.{sub}")
                section[sub] = copy.deepcopy(sub_value)
            result[key] = section
        else:
            if key in result and result[key] != value:
                note(f"coreos.{key}")
            result[key] = copy.deepcopy(value)
    return result


def _merge_units(base_units: list, over_units: list, note: Any) -> list:
    by_name = {u.get("name"): u for u in base_units}
    out = []
    for unit in over_units:
        name = unit.get("name")
        old = by_name.get(name)
        if old is None:
            out.append(copy.deepcopy(unit))
            continue
        merged = dict(old)
        for key, value in unit.items():
            if key == "name":
                continue
            if key == "drop_ins":
                merged["drop_ins"] = _merge_by(
                    merged.get("drop_ins") or [], value, "name", f"unit {name} drop-in", note
                )
                continue
            if key in merged and merged[key] != value:
                note(f"unit {name} {key}")
            merged[key] = copy.deepcopy(value)
        out.append(merged)
    taken = {u.get("name") for u in over_units}
    out += [u for u in base_units if u.get("name") not in taken]
    return out


def finalize_for_flavor(cfg: dict[str, Any], flavor: str) -> dict[str, Any]:
    """Spell every unit's drop-ins the flavour's way: `drop_ins` (Flatcar) or `drop-ins` (CoreOS)."""
    key = "drop_ins" if flavor == "flatcar" else "drop-ins"
    coreos = cfg.get("coreos")
    if isinstance(coreos, dict) and isinstance(coreos.get("units"), list):
        units = []
        for unit in coreos["units"]:
            unit = _normalize_unit(unit)
            if "drop_ins" in unit:
                unit[key] = unit.pop("drop_ins")
            units.append(unit)
        coreos["units"] = units
    return cfg


def render_user_data(cfg: Mapping[str, Any]) -> str:
    _require_yaml()
    body = yaml.dump(
        dict(cfg), Dumper=_yaml_dumper(), default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 16
    )
    return "#cloud-config\n" + body


def validate_cloud_config(cfg: Mapping[str, Any], source: str = "user data") -> None:
    """Structure checks over the merged result: unit names, commands, flags, drop-ins, files."""
    coreos = cfg.get("coreos") or {}
    if not isinstance(coreos, Mapping):
        raise ValidationError(f"{source}: coreos must be a mapping")
    names = set()
    for i, unit in enumerate(coreos.get("units") or []):
        validate_unit(unit, f"{source}: coreos.units[{i}]")
        if unit["name"] in names:
            raise ValidationError(f"{source}: unit {unit['name']} appears twice in coreos.units")
        names.add(unit["name"])
    paths = set()
    for i, entry in enumerate(cfg.get("write_files") or []):
        validate_write_file(entry, f"{source}: write_files[{i}]")
        if entry["path"] in paths:
            raise ValidationError(f"{source}: {entry['path']} appears twice in write_files")
        paths.add(entry["path"])


def validate_user_data(user_data: str, expected: Mapping[str, Any]) -> int:
    """Parse the rendered text back, check it round-trips and fits EC2's limit; returns its size."""
    parsed = parse_cloud_config(user_data, "generated user data")
    if parsed != expected:
        raise ValidationError("generated user data does not parse back to the same cloud-config (YAML round trip failed)")
    size = len(user_data.encode("utf-8"))
    if size > EC2_USER_DATA_LIMIT:
        raise ValidationError(
            f"user data is {size} bytes, over EC2's limit of {EC2_USER_DATA_LIMIT} bytes (16 KB, before base64): "
            "make the base file, units or write_files smaller"
        )
    return size


def json_safe(value: Any) -> Any:
    """The parsed cloud-config as JSON can carry it: bytes (!!binary) as base64, dates as ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def read_base_file(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"Cannot read the base cloud-config {path}: {exc}") from None


def build_user_data(
    settings: CloudConfigSettings, base_text: str | None = None, base_source: str = "content"
) -> CloudConfigResult:
    """Everything together: validate, generate, merge over the base, render, check."""
    validate_settings(settings)
    warnings: list[str] = []
    if settings.flavor == "coreos" and settings.etcd_version:
        warnings.append("etcd_version is ignored with flavor coreos: legacy CoreOS runs its built-in etcd2")

    cfg: dict[str, Any] = load_base(base_text, base_source) if base_text is not None else {}
    label = f"the base file {base_source}"
    extras = extras_cloud_config(settings)
    if extras:
        cfg, notes = merge_cloud_config(cfg, extras, "the units/write_files options", label)
        warnings += notes
        label = f"{label} or the units/write_files options"
    cfg, notes = merge_cloud_config(cfg, generate_cloud_config(settings), "the generated setting", label)
    warnings += notes

    cfg = finalize_for_flavor(cfg, settings.flavor)
    validate_cloud_config(cfg)
    user_data = render_user_data(cfg)
    size = validate_user_data(user_data, cfg)
    return CloudConfigResult(user_data=user_data, cloud_config=json_safe(cfg), size=size, warnings=warnings)


def iter_unit_files(cfg: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(relative path, text) of every unit file and drop-in the cloud-config writes: for checks."""
    for unit in (cfg.get("coreos") or {}).get("units") or []:
        unit = _normalize_unit(unit)
        if "content" in unit:
            yield unit["name"], unit["content"]
        for dropin in unit.get("drop_ins") or []:
            yield f"{unit['name']}.d/{dropin['name']}", dropin["content"]


def unit_names(cfg: Mapping[str, Any]) -> Sequence[str]:
    return [u["name"] for u in (cfg.get("coreos") or {}).get("units") or []]
