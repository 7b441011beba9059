# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cluster is: its name, size, region, machine type, security group and tags.

Every role (launch, ops, deploy) identifies a cluster by the tag CLUSTER_TAG_KEY=<cluster name> and names
its security group with security_group_name(); both live here so the roles can never disagree.
All checks run before anything is created and raise ValidationError naming the input and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._placement import (
    MARKETS,
    launch_template_data,
    validate_market,
    validate_subnet_ids,
)

CLUSTER_TAG_KEY = "coreos-ec2-cluster"
MANAGED_BY_TAG = {"managed-by": "coreos_ec2.cluster"}
SECURITY_GROUP_PREFIX = "coreos-ec2-"

# Flatcar publishes its AMIs from this account under names Flatcar-<channel>-<version>[-arm64]-hvm.
# https://www.flatcar.org/docs/latest/installing/cloud/aws-ec2/
FLATCAR_AMI_OWNER = "075585003325"
FLATCAR_CHANNELS = ("stable", "beta", "alpha", "lts")

DEFAULT_SIZE_MAX = 200
# etcd wants a small odd number of voting members (its FAQ recommends at most 7); the discovery token is sized
# for min(cluster size, this), and the machines beyond it join as proxies, which v2 discovery does by itself.
DEFAULT_ETCD_MEMBERS_MAX = 5
VOLUME_TYPES = ("gp2", "gp3", "io1", "io2", "st1", "sc1", "standard")
# Size limits per volume type in GiB, from the EBS volume types page.
_VOLUME_SIZE_LIMITS = {
    "gp2": (1, 16384),
    "gp3": (1, 16384),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
# Partitions whose regions are accepted; ISO partitions need special endpoints we do not support.
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

# A name that works as an EC2 tag value, inside a security group name, as an etcd member name prefix and in
# fleet metadata (which splits on ',' and '='): letters, digits and inner hyphens.
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Graviton families carry a 'g' right after the generation digit (c6g, m7gd, r8g, x2gd, im4gn, is4gen, hpc7g);
# a1 is the first Graviton family. Everything else we launch is x86_64.
_ARM_FAMILY_RE = re.compile(r"^(?:a1|[a-z]+\d+g[a-z]*)$")


def validate_cluster_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("cluster_name is empty: give a name of 1-63 letters, digits and inner hyphens")
    if not _NAME_RE.match(name):
        raise ValidationError(
            f"cluster_name {name!r} is not usable as a tag and security group name: "
            "allowed are 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
        )
    return name


def validate_cluster_size(size: Any, size_max: int = DEFAULT_SIZE_MAX) -> int:
    # bool is an int in Python; a YAML 'yes' must not become a one-machine cluster.
    if isinstance(size, bool) or not isinstance(size, int):
        if isinstance(size, str) and re.fullmatch(r"[+-]?\d+", size.strip()):
            size = int(size)
        else:
            raise ValidationError(f"cluster_size {size!r} is not an integer: give a whole number from 1 to {size_max}")
    if size < 1 or size > size_max:
        raise ValidationError(f"cluster_size {size} is out of range: allowed is 1 to {size_max}")
    return size


def known_regions(partitions: Iterable[str] = PARTITIONS) -> list[str]:
    """The EC2 regions botocore knows, read from its bundled endpoint data (no network).

    Read as the JSON file it is: a botocore session would answer the same (a unit test compares them) but costs
    half a second to set up, on every launch and operation.
    """
    import json
    import os

    import botocore  # imported here so the module's import check does not need boto

    with open(os.path.join(os.path.dirname(botocore.__file__), "data", "endpoints.json"), encoding="utf-8") as handle:
        data = json.load(handle)
    regions: set[str] = set()
    for partition in data.get("partitions", []):
        if partition.get("partition") not in partitions:
            continue
        endpoints = partition.get("services", {}).get("ec2", {}).get("endpoints", {})
        regions.update(name for name in endpoints if name in partition.get("regions", {}))
    return sorted(regions)


def validate_region(region: Any, regions: Iterable[str] | None = None) -> str:
    allowed = list(regions) if regions is not None else known_regions()
    if not isinstance(region, str) or region not in allowed:
        raise ValidationError(f"region {region!r} is not a known EC2 region; allowed: {', '.join(allowed)}")
    return region


def validate_instance_type(instance_type: Any) -> str:
    if not isinstance(instance_type, str) or not _INSTANCE_TYPE_RE.match(instance_type):
        raise ValidationError(
            f"instance_type {instance_type!r} is not an EC2 instance type: expected <family>.<size>, e.g. c5.large"
        )
    return instance_type


def instance_architecture(instance_type: str) -> str:
    """The AMI architecture an instance type needs: 'arm64' for Graviton families, else 'x86_64'."""
    family = validate_instance_type(instance_type).split(".", 1)[0]
    return "arm64" if _ARM_FAMILY_RE.match(family) else "x86_64"


def validate_channel(channel: Any) -> str:
    if channel not in FLATCAR_CHANNELS:
        raise ValidationError(f"channel {channel!r} is not a Flatcar channel; allowed: {', '.join(FLATCAR_CHANNELS)}")
    return channel


def ami_name_pattern(channel: str) -> str:
    # amd64 images are Flatcar-stable-4230.2.4-hvm, arm64 ones Flatcar-stable-4230.2.4-arm64-hvm; the
    # architecture filter of DescribeImages then keeps the right one.
    return f"Flatcar-{validate_channel(channel)}-*"


def validate_cidrs(cidrs: Any, option: str = "ssh_allowed_cidrs") -> list[str]:
    if cidrs is None:
        return []
    if isinstance(cidrs, str) or not isinstance(cidrs, (list, tuple)):
        raise ValidationError(f"{option} must be a list of CIDR blocks such as ['203.0.113.0/24']")
    result = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(str(cidr), strict=True)
        except ValueError as exc:
            raise ValidationError(f"{option} entry {cidr!r} is not a CIDR block: {exc}") from None
        result.append(str(network))
    return result


def validate_volume(size: Any, volume_type: Any) -> tuple[int, str]:
    if volume_type not in VOLUME_TYPES:
        raise ValidationError(f"ebs_volume_type {volume_type!r} is not an EBS type; allowed: {', '.join(VOLUME_TYPES)}")
    low, high = _VOLUME_SIZE_LIMITS[volume_type]
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise ValidationError(f"ebs_volume_size {size!r} is out of range for {volume_type}: allowed is {low} to {high} GiB")
    return size, volume_type


def open_cidr_warnings(cidrs: list[str], option: str = "ssh_allowed_cidrs") -> list[str]:
    """A warning per CIDR that admits (nearly) the whole internet: valid, but rarely what a user means for SSH."""
    return [f"{option} entry {cidr} opens SSH to {'the whole internet' if cidr.endswith('/0') else 'a very large range'}:"
            " every address in it can try to log in to the machines; prefer your own network's range"
            for cidr in cidrs if ipaddress.ip_network(cidr).prefixlen < (8 if ":" not in cidr else 16)]


def security_group_name(cluster_name: str) -> str:
    return SECURITY_GROUP_PREFIX + cluster_name


def cluster_tags(cluster_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    tags = dict(extra or {})
    tags.update(MANAGED_BY_TAG)
    tags[CLUSTER_TAG_KEY] = cluster_name
    return tags


def instance_filters(cluster_name: str, states: Iterable[str] = ("pending", "running", "stopping", "stopped")) -> dict[str, Any]:
    """DescribeInstances filters selecting one cluster's live machines (by tag, never by name or group)."""
    return {f"tag:{CLUSTER_TAG_KEY}": cluster_name, "instance-state-name": list(states)}


def security_group_rules(group_name: str, ssh_cidrs: list[str]) -> list[dict[str, Any]]:
    """Ingress rules: SSH from the given CIDRs only; cluster traffic only from the group itself.

    Ports: etcd clients 2379 and peers 2380 (plus the legacy 4001/7001 that old CoreOS etcd2 also listens on),
    flannel's udp backend 8285/udp and vxlan 8472/udp. fleet talks through etcd, so it needs no port of its own.
    """
    rules: list[dict[str, Any]] = [
        {"proto": "tcp", "ports": ["22"], "cidr_ip": cidr, "rule_desc": "SSH"} for cidr in ssh_cidrs if ":" not in cidr
    ]
    rules += [{"proto": "tcp", "ports": ["22"], "cidr_ipv6": cidr, "rule_desc": "SSH"} for cidr in ssh_cidrs if ":" in cidr]
    rules += [
        {"proto": "tcp", "ports": ["2379-2380"], "group_name": group_name, "rule_desc": "etcd clients and peers"},
        {"proto": "tcp", "ports": ["4001", "7001"], "group_name": group_name, "rule_desc": "etcd legacy ports"},
        {"proto": "udp", "ports": ["8285"], "group_name": group_name, "rule_desc": "flannel udp backend"},
        {"proto": "udp", "ports": ["8472"], "group_name": group_name, "rule_desc": "flannel vxlan backend"},
    ]
    return rules


def cluster_spec(
    cluster_name: Any,
    cluster_size: Any,
    region: Any,
    instance_type: Any,
    channel: Any = "stable",
    ssh_allowed_cidrs: Any = None,
    ebs_volume_size: Any = 100,
    ebs_volume_type: Any = "gp2",
    size_max: int = DEFAULT_SIZE_MAX,
    regions: Iterable[str] | None = None,
    extra_tags: dict[str, str] | None = None,
    etcd_members_max: Any = DEFAULT_ETCD_MEMBERS_MAX,
    subnet_ids: Any = None,
    market: Any = "on-demand",
    spot_max_price: Any = None,
) -> dict[str, Any]:
    """Validate every input of a launch and derive the names, tags, filters and rules the roles use.

    Operations on an existing cluster know no size or machine type: with those None, their checks are skipped
    and size, etcd_size and architecture come back as None.
    """
    name = validate_cluster_name(cluster_name)
    size = None if cluster_size is None else validate_cluster_size(cluster_size, size_max)
    region = validate_region(region, regions)
    architecture = None if instance_type is None else instance_architecture(instance_type)
    cidrs = validate_cidrs(ssh_allowed_cidrs)
    volume_size, volume_type = validate_volume(ebs_volume_size, ebs_volume_type)
    group = security_group_name(name)
    subnets = validate_subnet_ids(subnet_ids)
    market, price = validate_market(market, spot_max_price)
    if isinstance(etcd_members_max, bool) or not isinstance(etcd_members_max, int) or not 1 <= etcd_members_max <= 9:
        raise ValidationError(f"etcd_members_max {etcd_members_max!r} is out of range: allowed is 1 to 9")
    for key in extra_tags or {}:
        if key.lower().startswith("aws:") or key in (CLUSTER_TAG_KEY, "Name"):
            raise ValidationError(f"extra_tags key {key!r} is reserved; choose another key")
    return {
        "name": name,
        "size": size,
        "etcd_size": None if size is None else min(size, etcd_members_max),
        "region": region,
        "instance_type": instance_type,
        "architecture": architecture,
        "channel": validate_channel(channel),
        "ami_owner": FLATCAR_AMI_OWNER,
        "ami_name_pattern": ami_name_pattern(channel),
        "tag_key": CLUSTER_TAG_KEY,
        "tags": cluster_tags(name, extra_tags),
        "instance_filters": instance_filters(name),
        "security_group_name": group,
        "security_group_rules": security_group_rules(group, cidrs),
        "ssh_allowed_cidrs": cidrs,
        "ebs_volume_size": volume_size,
        "ebs_volume_type": volume_type,
        "subnet_ids": subnets,
        "market": market,
        "spot_max_price": price,
        # Spot machines start through the cluster's launch template (named like its security group).
        "launch_template_name": group,
        "launch_template_data": launch_template_data(market, price),
    }


def spec_argument_spec() -> dict[str, Any]:
    """The cluster_spec module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        cluster_size=dict(type="raw"),
        cluster_size_max=dict(type="int", default=DEFAULT_SIZE_MAX),
        etcd_members_max=dict(type="int", default=DEFAULT_ETCD_MEMBERS_MAX),
        region=dict(type="str", required=True),
        instance_type=dict(type="str"),
        channel=dict(type="str", default="stable", choices=list(FLATCAR_CHANNELS)),
        ssh_allowed_cidrs=dict(type="list", elements="str", default=[]),
        ebs_volume_size=dict(type="int", default=100),
        ebs_volume_type=dict(type="str", default="gp2"),
        extra_tags=dict(type="dict", default={}),
        subnet_ids=dict(type="list", elements="str", default=[]),
        market=dict(type="str", default="on-demand", choices=list(MARKETS)),
        spot_max_price=dict(type="str", default=""),
    )


def run_cluster_spec(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The cluster_spec module's result and warnings; raises ValidationError."""
    spec = cluster_spec(
        params["cluster_name"], params["cluster_size"], params["region"], params["instance_type"],
        channel=params["channel"], ssh_allowed_cidrs=params["ssh_allowed_cidrs"],
        ebs_volume_size=params["ebs_volume_size"], ebs_volume_type=params["ebs_volume_type"],
        size_max=params["cluster_size_max"], extra_tags=params["extra_tags"],
        etcd_members_max=params["etcd_members_max"], subnet_ids=params["subnet_ids"], market=params["market"],
        spot_max_price=params["spot_max_price"],
    )
    return {"changed": False, "spec": spec}, open_cidr_warnings(spec["ssh_allowed_cidrs"])


def instance_row(instance: dict[str, Any], data_device: str = "/dev/sdb") -> dict[str, Any]:
    """One machine as the roles report it, from an ec2_instance(_info) result in Ansible's snake_case."""
    volume: dict[str, Any] = {}
    for mapping in instance.get("block_device_mappings") or []:
        if mapping.get("device_name") == data_device:
            volume = mapping.get("ebs") or {}
    return {
        "id": instance.get("instance_id", ""),
        "state": (instance.get("state") or {}).get("name", ""),
        "instance_type": instance.get("instance_type", ""),
        "availability_zone": (instance.get("placement") or {}).get("availability_zone", ""),
        "private_ip": instance.get("private_ip_address") or "",
        "public_ip": instance.get("public_ip_address") or "",
        "public_dns_name": instance.get("public_dns_name") or "",
        "launch_time": str(instance.get("launch_time") or ""),
        "subnet_id": instance.get("subnet_id") or "",
        # EC2 names spot machines' lifecycle (and scheduled ones'); on-demand machines have none.
        "lifecycle": instance.get("instance_lifecycle") or "on-demand",
        "volume_id": volume.get("volume_id", ""),
        "volume_status": volume.get("status", ""),
    }


def instance_rows(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for many machines, oldest first (launch order is how scale picks the newest)."""
    rows = [instance_row(i) for i in instances]
    return sorted(rows, key=lambda r: (r["launch_time"], r["id"]))


def add_volume_sizes(rows: list[dict[str, Any]], volumes: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Rows with the data volume's size (GiB) from an ec2_vol_info answer; '-' where it is unknown."""
    sizes = {v.get("id"): v.get("size") for v in volumes or []}
    return [dict(row, volume_size=sizes.get(row.get("volume_id"), "-")) for row in rows]


PROBE_SEPARATOR = "--- fleet"
# The probe prints etcd's health first, then sections each headed by a line `--- <name>`.
PROBE_SECTIONS = ("fleet", "members", "flannel", "ebs", "failed")
# raw over a tty ends lines with CRLF
_SECTION_RE = re.compile(r"^--- (" + "|".join(PROBE_SECTIONS) + r")[ \t\r]*$", re.M)


def probe_sections(out: str) -> dict[str, str]:
    """The probe's output by section: 'etcd' (what came before the first header) and every `--- name` section."""
    parts = _SECTION_RE.split(out)
    sections = {"etcd": parts[0].strip()}
    for name, text in zip(parts[1::2], parts[2::2]):
        sections[name] = text.strip()
    return sections


def sandbox_probe_plan(rows: list[dict[str, Any]], host_status: dict[str, Any] | None) -> dict[str, Any]:
    """Which running machines of a sandbox cluster to probe over SSH, and why the others are not.

    Only a machine whose address a node of the sandbox holds (the host's status says its node runs) is asked:
    the emulator's other addresses belong to nobody here and must never be connected to.
    """
    status = host_status or {}
    nodes = status.get("instances") or {}
    probe, no_node = [], {}
    for row in rows:
        if row.get("state") != "running":
            continue
        node = nodes.get(row.get("id")) or {}
        if node.get("state") == "running" and node.get("ip") == row.get("private_ip"):
            probe.append(row)
            continue
        if status.get("mode") != "nodes":
            why = f"the sandbox runs API only: {status.get('reason') or 'its host is not running'}"
        elif node:
            why = f"its node is {node.get('state')}" + (f": {node['reason']}" if node.get("reason") else "")
        else:
            why = "the sandbox has not started a node for it yet"
        no_node[str(row.get("id"))] = f"no node behind it on the sandbox ({why})"
    return {"probe": probe, "no_node": no_node}


def probe_results(results: list[dict[str, Any]] | None, not_probed: dict[str, str] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Per machine id: what one SSH probe (etcd health, then fleet's machine list and, from probes that ask
    for them, etcd's members, flannel's network and subnet, the data volume's mount and failed units) found.

    `results` is the `results` list of a looped raw task over the cluster's rows (each result carries its row as
    `item`); unreachable machines and failed commands are reported, never raised. `not_probed` maps the ids of
    machines that were deliberately not asked to the reason, reported as unreachable.
    """
    probes: dict[str, dict[str, Any]] = {}
    for result in results or []:
        item = result.get("item") or {}
        if result.get("skipped") or not item.get("id"):
            continue
        if result.get("unreachable"):
            probes[item["id"]] = {"reachable": False, "etcd": "", "fleet": "", "error": str(result.get("msg", "unreachable"))}
            continue
        sections = probe_sections(str(result.get("stdout") or ""))
        error = "" if result.get("rc", 0) == 0 else f"exit {result.get('rc')}: {str(result.get('stderr') or '').strip()}"
        probe = {"reachable": True, "etcd": sections.pop("etcd"), "fleet": sections.pop("fleet", ""), "error": error}
        probe.update(sections)
        probes[item["id"]] = probe
    for instance_id, why in (not_probed or {}).items():
        probes.setdefault(instance_id, {"reachable": False, "etcd": "", "fleet": "", "error": why})
    return probes


def volume_row(volume: dict[str, Any]) -> dict[str, Any]:
    """One EBS volume as the roles report it, from a boto3 DescribeVolumes entry.

    Reads only the keys every EC2 implementation sends; SnapshotId, for one, is left out by some.
    """
    attachments = volume.get("Attachments") or []
    first = attachments[0] if attachments else {}
    return {
        "id": volume.get("VolumeId", ""),
        "size": volume.get("Size"),
        "type": volume.get("VolumeType", ""),
        "state": volume.get("State", ""),
        "encrypted": bool(volume.get("Encrypted", False)),
        "instance_id": first.get("InstanceId", ""),
        "device": first.get("Device", ""),
        "delete_on_termination": bool(first.get("DeleteOnTermination", False)),
        "tags": {t["Key"]: t["Value"] for t in volume.get("Tags") or [] if "Key" in t},
    }


PUBLIC_DISCOVERY = "https://discovery.etcd.io"


def endpoints(target: str, sandbox: dict[str, Any] | None, region: str, discovery_protocol: str = "public",
              discovery_service: str | None = None, key_name: str | None = None, aws_endpoint_url: str | None = None,
              aws_profile: str | None = None) -> dict[str, Any]:
    """Where the EC2 API and the discovery service are for a target, and how machines are reached.

    The sandbox: its own EC2 endpoint and credentials, its discovery.etcd.io server (public protocol) or its etcd
    (etcd_v2), its key pair and private key. AWS: the caller's endpoint/profile (none: botocore's defaults), the public
    discovery service unless discovery_service says otherwise, the caller's key pair and SSH setup.
    """
    if target == "sandbox":
        sandbox = sandbox or {}
        service = discovery_service or (sandbox.get("discovery_public") if discovery_protocol == "public"
                                        else sandbox.get("discovery_endpoint"))
        return {
            "aws": {"endpoint_url": sandbox.get("ec2_endpoint_url"), "access_key": sandbox.get("access_key"),
                    "secret_key": sandbox.get("secret_key"), "profile": None, "region": region},
            "discovery": _discovery(discovery_protocol, service or ""),
            "key_name": key_name or sandbox.get("key_name") or "",
            "ssh_key_file": sandbox.get("private_key_file") or "",
        }
    service = discovery_service or (PUBLIC_DISCOVERY if discovery_protocol == "public" else "")
    return {
        "aws": {"endpoint_url": aws_endpoint_url or None, "access_key": None, "secret_key": None,
                "profile": aws_profile or None, "region": region},
        "discovery": _discovery(discovery_protocol, service),
        "key_name": key_name or "",
        "ssh_key_file": "",
    }


def _discovery(protocol: str, service: str) -> dict[str, str]:
    # The placeholder is a token URL of the real one's length (the user data counts against EC2's 16 KB): the
    # preflight renders the cloud-config with it before any token exists, and check mode, which mints none, too.
    path = "/" if protocol == "public" else "/v2/keys/_etcd/registry/"
    return {"protocol": protocol, "service": service, "placeholder": service.rstrip("/") + path + "0" * 32}


def probe_plan(rows: list[dict[str, Any]], probe: bool, target: str, host_status: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Which machines inspect asks over SSH: none without probes; on the sandbox those a node holds the address of
    (sandbox_probe_plan); on AWS every running machine."""
    if not probe:
        return {"probe": [], "no_node": {}}
    if target == "sandbox":
        return sandbox_probe_plan(rows, host_status)
    return {"probe": [row for row in rows if row.get("state") == "running"], "no_node": {}}
