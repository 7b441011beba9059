# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a launch reads before it creates anything, and the refusals that follow from it.

The cluster_lookup module reads the key pair, the image, the security group, the cluster's machines and whether
the region offers the machine type in a handful of describe calls; these functions turn the answers into the
facts the launch role uses and into one message per problem, each naming the input and what is allowed.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_filters, instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._group_rules import group_is_current
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import PENDING_DISCOVERY_TAG_KEY, group_tags
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._placement import (
    LIVE_STATES,
    cluster_subnets,
    spread,
    subnet_problems,
    subnet_rows,
)


def newest_image(images: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The newest available image (by creation date, then name), as the launch role uses it; {} when none."""
    usable = [i for i in images if i.get("State", "available") == "available"]
    if not usable:
        return {}
    best = max(usable, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))
    root = best.get("RootDeviceName") or "/dev/xvda"
    # The root volume's size as the image defines it: a mapping that only asks for encryption still names a size.
    root_size = next((m.get("Ebs", {}).get("VolumeSize") for m in best.get("BlockDeviceMappings") or []
                      if m.get("DeviceName") == root), None)
    return {
        "image_id": best.get("ImageId", ""),
        "name": best.get("Name", ""),
        "creation_date": best.get("CreationDate", ""),
        "root_device_name": root,
        "root_volume_size": root_size or 8,
        "architecture": best.get("Architecture", ""),
    }


def preflight_problems(
    *,
    cluster_name: str,
    region: str,
    key_name: str,
    key_found: bool,
    image: Mapping[str, Any],
    image_id: str | None,
    channel: str,
    architecture: str,
    ami_owner: str,
    instance_type: str,
    type_offered: bool | None,
    offered_similar: list[str],
    existing_count: int,
    size: int,
) -> list[str]:
    """Every reason not to go on, in the order a user would fix them; empty when the launch can proceed."""
    problems = []
    if key_name and not key_found:
        problems.append(f"key pair {key_name} does not exist in {region}: create or import it first "
                        "(key_name must name an existing EC2 key pair)")
    if not image:
        problems.append(f"image_id {image_id} does not exist in {region}" if image_id else
                        f"no available Flatcar {channel} image for {architecture} owned by {ami_owner} in {region}")
    if type_offered is False:
        hint = f" (similar types offered there: {', '.join(offered_similar)})" if offered_similar else ""
        problems.append(f"instance_type {instance_type} is not offered in {region}{hint}: "
                        "give a type the region offers (aws ec2 describe-instance-type-offerings)")
    if existing_count not in (0, size):
        problems.append(f"cluster {cluster_name} already has {existing_count} machines, not {size}: "
                        "launch never resizes a cluster (use the scale operation)")
    return problems


def similar_types(wanted: str, offered: Iterable[str], limit: int = 5) -> list[str]:
    """Offered types of the same family (c4.large -> c4.xlarge ...), else of the same size, for the message."""
    family, dummy, size = wanted.partition(".")
    offered = sorted(set(offered))
    same_family = [t for t in offered if t.partition(".")[0] == family]
    if same_family:
        return same_family[:limit]
    return [t for t in offered if t.partition(".")[2] == size][:limit]


def _filters(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"Name": name, "Values": value if isinstance(value, list) else [value]} for name, value in mapping.items()]


def lookup_argument_spec() -> dict[str, Any]:
    """The cluster_lookup module's options (the module and the controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        size=dict(type="int", required=True),
        key_name=dict(type="str", default=""),
        image_id=dict(type="str"),
        ami_owner=dict(type="str", default="075585003325"),
        ami_name_pattern=dict(type="str", required=True),
        architecture=dict(type="str", default="x86_64", choices=["x86_64", "arm64"]),
        channel=dict(type="str", default="stable"),
        instance_type=dict(type="str", required=True),
        check_offering=dict(type="bool", default=True),
        security_group_name=dict(type="str", required=True),
        security_group_rules=dict(type="list", elements="dict"),
        tags=dict(type="dict", default={}),
        subnet_ids=dict(type="list", elements="str", default=[]),
    )


def lookup_cluster(client: Any, p: Mapping[str, Any], region: str) -> dict[str, Any]:
    """What a launch reads before it creates anything, with an EC2 client (boto3's); never raises for an EC2
    error: the result's `error` names the step that failed."""
    result = dict(changed=False, problems=[], error="", image={}, security_group={}, instances=[], user_data=[],
                  pending_discovery_url="", subnets=[], placement=[], notes=[])
    subnet_ids = list(p.get("subnet_ids") or [])
    subnets: list[dict[str, Any]] = []
    zone_problems: list[str] = []
    step = "connect to EC2"
    try:

        step = f"read the machines of cluster {p['cluster_name']}"
        pages = client.get_paginator("describe_instances").paginate(
            Filters=_filters(instance_filters(p["cluster_name"]))).build_full_result()
        raw = [camel_dict_to_snake_dict(i) for r in pages.get("Reservations", []) for i in r.get("Instances", [])]
        rows = instance_rows(raw)
        result["instances"] = rows

        # A complete, running cluster launches nothing: its key pair, image and machine type need no checking (a
        # re-run then costs two describe calls here).
        complete = len(rows) == p["size"] and all(r["state"] == "running" for r in rows)
        key_found = True
        if p["key_name"] and not complete:
            step = f"read key pair {p['key_name']}"
            keys = client.describe_key_pairs(Filters=_filters({"key-name": p["key_name"]}))["KeyPairs"]
            key_found = len(keys) == 1

        step = "look up the image"
        # An image id goes in as a filter: asked for by ImageIds, an unknown id is an error, as a filter it is no image.
        if complete:
            images = [{"ImageId": raw[0].get("image_id", ""), "Name": "", "State": "available",
                       "RootDeviceName": raw[0].get("root_device_name")}]
        elif p["image_id"]:
            images = client.describe_images(Filters=_filters({"image-id": p["image_id"]}))["Images"]
        else:
            images = client.describe_images(Owners=[p["ami_owner"]], Filters=_filters({
                "name": p["ami_name_pattern"], "architecture": p["architecture"], "virtualization-type": "hvm",
                "state": "available"}))["Images"]
        result["image"] = newest_image(images)

        step = f"read security group {p['security_group_name']}"
        groups = client.describe_security_groups(
            Filters=_filters({"group-name": p["security_group_name"]}))["SecurityGroups"]
        if groups:
            tags = group_tags(groups[0])
            result["pending_discovery_url"] = tags.pop(PENDING_DISCOVERY_TAG_KEY, "")
            result["security_group"] = {
                "group_id": groups[0]["GroupId"], "vpc_id": groups[0].get("VpcId", ""), "tags": tags,
                "current": p.get("security_group_rules") is not None
                and group_is_current(groups[0], p["security_group_rules"], p.get("tags") or {}),
            }

        if subnet_ids and complete:
            # A complete cluster launches nothing: no subnet is read; machines elsewhere only get a note.
            outside = sorted({r["subnet_id"] for r in rows if r["subnet_id"] not in subnet_ids})
            if outside:
                result["notes"].append(f"cluster {p['cluster_name']} has machines in {', '.join(outside)}, which "
                                       "subnet_ids does not name; launch does not move machines")
        elif subnet_ids:
            step = f"read subnets {', '.join(subnet_ids)}"
            subnets = subnet_rows(client.describe_subnets(Filters=_filters({"subnet-id": subnet_ids}))["Subnets"],
                                  subnet_ids)
            result["subnets"] = subnets
            zone_problems = subnet_problems(subnet_ids, subnets, region, rows,
                                            result["security_group"].get("vpc_id", ""))
        elif not complete:
            # Without subnet_ids, new machines go where the cluster's machines are, or into the default subnet
            # ec2_instance would pick (the first zone's of the default VPC). Naming it saves ec2_instance two
            # lookups of the default VPC and subnet per new machine.
            subnets = cluster_subnets(rows)
            if any(not r["subnet_id"] for r in rows if r["state"] in LIVE_STATES):
                subnets = []  # a machine outside any subnet: count the whole cluster, as ec2_instance alone would
            elif not subnets:
                step = "find the default VPC's default subnets"
                vpcs = client.describe_vpcs(Filters=_filters({"is-default": "true"}))["Vpcs"]
                defaults = client.describe_subnets(Filters=_filters({
                    "vpc-id": vpcs[0]["VpcId"], "default-for-az": "true", "state": "available"}))["Subnets"] if vpcs else []
                if defaults:
                    first = min(defaults, key=lambda s: s.get("AvailabilityZone", ""))
                    subnets = subnet_rows([first], [first["SubnetId"]])
                    result["subnets"] = subnets
                else:
                    zone_problems.append(f"{region} has no default VPC with a default subnet: give subnet_ids "
                                         "(subnets of the VPC to launch into)")
        result["placement"] = spread(rows, subnets, p["size"]) if subnets else [
            {"subnet_id": "", "availability_zone": "", "count": p["size"], "new": max(p["size"] - len(rows), 0)}]

        offered, similar = None, []
        zones = sorted({s["availability_zone"] for s in subnets})
        if p["check_offering"] and len(rows) < p["size"] and subnet_ids and zones and not zone_problems:
            # Each zone must offer the type: a region that offers it may still lack it in one zone.
            step = f"check that zones {', '.join(zones)} offer {p['instance_type']}"
            pages = client.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="availability-zone",
                Filters=_filters({"instance-type": p["instance_type"], "location": zones})).build_full_result()
            offered_zones = {o.get("Location") for o in pages.get("InstanceTypeOfferings", [])}
            for subnet in subnets:
                if subnet["availability_zone"] not in offered_zones:
                    zone_problems.append(
                        f"instance_type {p['instance_type']} is not offered in zone {subnet['availability_zone']} "
                        f"(subnet {subnet['subnet_id']}): give subnets in zones that offer it, or another type")
        elif p["check_offering"] and len(rows) < p["size"] and not subnet_ids:
            step = f"check that {region} offers {p['instance_type']}"
            offerings = client.describe_instance_type_offerings(
                LocationType="region",
                Filters=_filters({"instance-type": p["instance_type"], "location": region}))["InstanceTypeOfferings"]
            offered = bool(offerings)
            if not offered:
                family = p["instance_type"].partition(".")[0]
                pages = client.get_paginator("describe_instance_type_offerings").paginate(
                    LocationType="region", Filters=_filters({"instance-type": f"{family}.*"})).build_full_result()
                similar = similar_types(p["instance_type"], [o["InstanceType"] for o in pages.get("InstanceTypeOfferings", [])])

        # The discovery URL of a cluster being completed: one machine's user data carries it.
        if rows and len(rows) < p["size"] or rows and not all(r["state"] == "running" for r in rows):
            step = "read the cluster's user data"
            answer = client.describe_instance_attribute(InstanceId=rows[0]["id"], Attribute="userData")
            value = (answer.get("UserData") or {}).get("Value")
            if value:
                result["user_data"] = [base64.b64decode(value).decode("utf-8", "replace")]
    except Exception as e:  # pylint: disable=broad-exception-caught
        # botocore's errors (its classes are not imported here): the result carries the step and the message.
        if not type(e).__module__.startswith("botocore"):
            raise
        result["error"] = f"Failed to {step}: {e}"
        return result

    result["problems"] = preflight_problems(
        cluster_name=p["cluster_name"], region=region, key_name=p["key_name"], key_found=key_found,
        image=result["image"], image_id=p["image_id"], channel=p["channel"], architecture=p["architecture"],
        ami_owner=p["ami_owner"], instance_type=p["instance_type"], type_offered=offered, offered_similar=similar,
        existing_count=len(rows), size=p["size"],
    ) + zone_problems
    return result
