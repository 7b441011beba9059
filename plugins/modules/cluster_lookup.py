#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_lookup
short_description: Read everything a launch checks before it creates anything, in one run
version_added: 0.3.0
description:
  - Reads the key pair, the newest Flatcar image of the channel (or O(image_id)), the cluster's security group,
    the cluster's machines and whether the region offers O(instance_type), with one describe call each, and
    returns them with RV(problems), one message per reason not to launch.
  - Reads the user data of one machine of the cluster (to reuse its discovery URL) only when the cluster is
    incomplete, and returns the discovery URL that an interrupted launch recorded on the security group.
    Both are secrets, so use C(no_log) on the task. The module therefore never fails on a describe error either;
    it returns RV(error) for the next task to report.
  - For a complete cluster (O(size) machines, all running), which a launch does not add to, only the machines and
    the security group are read (two calls).
  - Changes nothing.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
options:
  cluster_name:
    description: The cluster, identified by its tag C(coreos-ec2-cluster).
    type: str
    required: true
  size:
    description: The number of machines the cluster should have.
    type: int
    required: true
  key_name:
    description: The key pair the machines get; not checked when empty.
    type: str
    default: ""
  image_id:
    description: An image to use instead of the newest Flatcar image of O(channel).
    type: str
  ami_owner:
    description: The account that publishes the images.
    type: str
    default: "075585003325"
  ami_name_pattern:
    description: The name pattern of the channel's images, for example V(Flatcar-stable-*).
    type: str
    required: true
  architecture:
    description: The machines' architecture.
    type: str
    default: x86_64
    choices: [x86_64, arm64]
  channel:
    description: The Flatcar channel, for messages.
    type: str
    default: stable
  instance_type:
    description: The machine type; checked against the region's offerings.
    type: str
    required: true
  check_offering:
    description: Whether to check that the region offers O(instance_type).
    type: bool
    default: true
  security_group_name:
    description: The cluster's security group.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read what the launch of cluster p-1 needs
  coreos_ec2.cluster.cluster_lookup:
    cluster_name: p-1
    size: 3
    key_name: ops
    ami_name_pattern: Flatcar-stable-*
    instance_type: c4.large
    security_group_name: coreos-ec2-p-1
  register: found
  no_log: true
"""

RETURN = r"""
problems:
  description: One message per reason not to launch (missing key pair or image, type not offered, size mismatch).
  returned: always
  type: list
  elements: str
error:
  description: A describe call that failed (credentials, endpoint, permissions); empty otherwise.
  returned: always
  type: str
image:
  description: The image to launch (image_id, name, creation_date, root_device_name, architecture); empty if none.
  returned: always
  type: dict
security_group:
  description: The cluster's security group (group_id, vpc_id, tags without the recorded discovery URL); empty if none.
  returned: always
  type: dict
instances:
  description: The cluster's machines in any state but terminated, as rows, oldest first.
  returned: always
  type: list
  elements: dict
user_data:
  description: The user data of one machine of an incomplete cluster, raw; empty otherwise. A secret.
  returned: always
  type: list
  elements: str
pending_discovery_url:
  description: The discovery URL an interrupted launch recorded on the security group; empty if none. A secret.
  returned: always
  type: str
"""

import base64

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_filters, instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import PENDING_DISCOVERY_TAG_KEY, group_tags
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lookup import (
    newest_image,
    preflight_problems,
    similar_types,
)

RETRY = AWSRetry.jittered_backoff(retries=10)


def _filters(mapping):
    return [{"Name": name, "Values": value if isinstance(value, list) else [value]} for name, value in mapping.items()]


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
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
        ),
        supports_check_mode=True,
    )
    p = module.params
    region = module.region
    result = dict(changed=False, problems=[], error="", image={}, security_group={}, instances=[], user_data=[],
                  pending_discovery_url="")
    step = "connect to EC2"
    try:
        client = module.client("ec2", retry_decorator=RETRY)

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
            keys = client.describe_key_pairs(aws_retry=True, Filters=_filters({"key-name": p["key_name"]}))["KeyPairs"]
            key_found = len(keys) == 1

        step = "look up the image"
        # An image id goes in as a filter: asked for by ImageIds, an unknown id is an error, as a filter it is no image.
        if complete:
            images = [{"ImageId": raw[0].get("image_id", ""), "Name": "", "State": "available",
                       "RootDeviceName": raw[0].get("root_device_name")}]
        elif p["image_id"]:
            images = client.describe_images(aws_retry=True, Filters=_filters({"image-id": p["image_id"]}))["Images"]
        else:
            images = client.describe_images(aws_retry=True, Owners=[p["ami_owner"]], Filters=_filters({
                "name": p["ami_name_pattern"], "architecture": p["architecture"], "virtualization-type": "hvm",
                "state": "available"}))["Images"]
        result["image"] = newest_image(images)

        step = f"read security group {p['security_group_name']}"
        groups = client.describe_security_groups(
            aws_retry=True, Filters=_filters({"group-name": p["security_group_name"]}))["SecurityGroups"]
        if groups:
            tags = group_tags(groups[0])
            result["pending_discovery_url"] = tags.pop(PENDING_DISCOVERY_TAG_KEY, "")
            result["security_group"] = {"group_id": groups[0]["GroupId"], "vpc_id": groups[0].get("VpcId", ""), "tags": tags}

        offered, similar = None, []
        if p["check_offering"] and len(rows) < p["size"]:
            step = f"check that {region} offers {p['instance_type']}"
            offerings = client.describe_instance_type_offerings(
                aws_retry=True, LocationType="region",
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
            answer = client.describe_instance_attribute(aws_retry=True, InstanceId=rows[0]["id"], Attribute="userData")
            value = (answer.get("UserData") or {}).get("Value")
            if value:
                result["user_data"] = [base64.b64decode(value).decode("utf-8", "replace")]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "") if hasattr(e, "response") else ""
        result["error"] = f"Failed to {step}: {code + ': ' if code else ''}{e}"
        module.exit_json(**result)

    result["problems"] = preflight_problems(
        cluster_name=p["cluster_name"], region=region, key_name=p["key_name"], key_found=key_found,
        image=result["image"], image_id=p["image_id"], channel=p["channel"], architecture=p["architecture"],
        ami_owner=p["ami_owner"], instance_type=p["instance_type"], type_offered=offered, offered_similar=similar,
        existing_count=len(rows), size=p["size"],
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
