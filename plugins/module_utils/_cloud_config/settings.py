# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The settings the generated cloud-config depends on: defaults, dataclasses and their validation.

`settings_from_params` turns the module's parameters into `CloudConfigSettings` and
`validate_settings` rejects bad or incompatible combinations before anything is generated.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    validate_unit,
    validate_write_file,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


FLAVORS = ("flatcar", "coreos")
DEFAULT_FLAVOR = "flatcar"
# etcd 3.5 is the last line with the v2 API (--enable-v2) that fleet, flannel's etcdctl `set` and the
# v2 discovery protocol need; 3.6 removed it and brought v3 discovery (--discovery-token).
DEFAULT_ETCD_VERSION = "v3.5.17"
DEFAULT_ETCD_V3_DISCOVERY_VERSION = "v3.6.11"
DEFAULT_FLANNEL_NETWORK = "10.1.0.0/16"
# fleet's last release; its Dockerfile ADDs fleetd and fleetctl to /usr/local/bin of an alpine image.
DEFAULT_FLEET_IMAGE = "quay.io/coreos/fleet:v1.0.0"
DEFAULT_EBS = {
    "enabled": True,
    "device": "/dev/sdb",
    "filesystem": "ext4",
    "mount_point": "/media/ebs",
    "label": "coreos-ebs",
}
EBS_FILESYSTEMS = ("ext4", "xfs", "btrfs")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_LABEL_MAX = {"ext4": 16, "xfs": 12, "btrfs": 255}
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@:-]*$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9._-]+)?(?:@sha256:[0-9a-f]{64})?$")
_ETCD_VERSION_RE = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?P<suffix>[-+][0-9A-Za-z.-]+)?$")
_FLANNEL_BACKEND_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_HOSTNAME_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Characters that would break out of Environment="..." or be read as a systemd specifier (%).
_UNSAFE_IN_UNIT_VALUE = set('"\\%\'`') | {" ", "\t", "\n", "\r"}


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
