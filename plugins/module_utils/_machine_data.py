# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One machine of a cluster with its user data: where scale copies new machines from, and where inspect and
cleanup read the cluster's discovery setting. Terminated machines stay listed for a while and still carry it, so
cleanup finds the token even after terminate. And the machines' data volumes, with one DescribeVolumes.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY, volume_row
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, aws_error_text, is_botocore_error


def user_data_info_argument_spec() -> dict[str, Any]:
    """The cluster_user_data_info module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        instance_ids=dict(type="list", elements="str", default=[]),
    )


def run_user_data_info(client: Any, p: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The first of p['instance_ids'] (else any machine that ever carried the cluster tag) with its user data, in
    ec2_instance_info's shape with include_attributes [userData]; no machine gives an empty list."""
    step = f"read the machines of cluster {p['cluster_name']}"
    try:
        if p["instance_ids"]:
            reservations = client.describe_instances(InstanceIds=p["instance_ids"][:1])["Reservations"]
        else:
            pages = client.get_paginator("describe_instances").paginate(
                Filters=[{"Name": f"tag:{CLUSTER_TAG_KEY}", "Values": [p["cluster_name"]]}]).build_full_result()
            reservations = pages.get("Reservations", [])
        found = [i for r in reservations for i in r.get("Instances", [])]
        if not found:
            return {"changed": False, "instances": []}, []
        instance = found[0]
        step = f"read the user data of {instance['InstanceId']}"
        answer = client.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if not is_botocore_error(exc):
            raise
        raise ClusterError(f"Failed to {step}: {exc}") from exc
    row = camel_dict_to_snake_dict({k: v for k, v in instance.items() if k != "Tags"})
    row["tags"] = {t["Key"]: t["Value"] for t in instance.get("Tags") or []}
    row["attributes"] = {"user_data": {"value": (answer.get("UserData") or {}).get("Value") or ""}}
    return {"changed": False, "instances": [row]}, []


def volumes_info_argument_spec() -> dict[str, Any]:
    """The cluster_volumes_info module's options (module and controller-side action plugin)."""
    return dict(volume_ids=dict(type="list", elements="str", required=True))


def run_volumes_info(client: Any, p: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The volumes p['volume_ids'] as volume rows, all pages of one DescribeVolumes; no ids, no call."""
    ids = list(p["volume_ids"])
    if not ids:
        return {"changed": False, "volumes": []}, []
    try:
        pages = client.get_paginator("describe_volumes").paginate(VolumeIds=ids).build_full_result()
    except Exception as e:  # pylint: disable=broad-exception-caught
        if not is_botocore_error(e):
            raise
        raise ClusterError(f"Failed to describe volumes {', '.join(ids)}: {aws_error_text(e)}") from None
    return {"changed": False, "volumes": [volume_row(v) for v in pages.get("Volumes", [])]}, []
