# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cleanup reads before it removes anything, in one run: the cluster's security group, the machines outside
the cluster that still use it, and (for the sandbox's token sweep) every discovery URL the region still names and
whether any cluster's launch or scale holds its lock.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.user_data import find_discovery_in_user_data
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, aws_error_code, is_botocore_error
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import LOCK_TAG_KEY, PENDING_DISCOVERY_TAG_KEY

# Machines that still hold a group, or may still carry a discovery URL, are in any of these states.
ALIVE = ["pending", "running", "shutting-down", "stopping", "stopped"]


def cleanup_info_argument_spec() -> dict[str, Any]:
    """The cluster_cleanup_info module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        security_group_name=dict(type="str", required=True),
        sweep=dict(type="bool", default=False),
    )


def _tags(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def _filters(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"Name": k, "Values": v if isinstance(v, list) else [v]} for k, v in mapping.items()]


def _instances(client: Any, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    pages = client.get_paginator("describe_instances").paginate(Filters=_filters(filters)).build_full_result()
    return [i for r in pages.get("Reservations", []) for i in r.get("Instances", [])]


def _groups(client: Any, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    pages = client.get_paginator("describe_security_groups").paginate(Filters=_filters(filters)).build_full_result()
    return pages.get("SecurityGroups", [])


def run_cleanup_info(client: Any, p: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The cluster_cleanup_info result; raises ClusterError naming the read that failed."""
    name = p["cluster_name"]
    step = f"read security group {p['security_group_name']}"
    try:
        groups = _groups(client, {"group-name": p["security_group_name"], f"tag:{CLUSTER_TAG_KEY}": name})
        # ec2_security_group_info's shape (snake_case, tags as a dict), which the ops filters take.
        security_groups = [dict(camel_dict_to_snake_dict({k: v for k, v in g.items() if k != "Tags"}), tags=_tags(g))
                           for g in groups]
        foreign: list[str] = []
        if groups:
            step = f"find the machines that use security group {groups[0]['GroupId']}"
            users = _instances(client, {"instance.group-id": groups[0]["GroupId"], "instance-state-name": ALIVE})
            foreign = sorted(i["InstanceId"] for i in users if _tags(i).get(CLUSTER_TAG_KEY) != name)
        result: dict[str, Any] = {"changed": False, "security_groups": security_groups, "foreign": foreign,
                                  "referenced": [], "locked": False, "sweep_blocked": ""}
        if p["sweep"]:
            step = "read the discovery URLs of every machine in the region"
            referenced, unreadable = [], []
            # Not this cluster's machines and group: the cleanup removes them before it sweeps.
            for instance in _instances(client, {"instance-state-name": ALIVE}):
                if _tags(instance).get(CLUSTER_TAG_KEY) == name:
                    continue
                answer = client.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
                try:
                    found = find_discovery_in_user_data((answer.get("UserData") or {}).get("Value") or "") or {}
                except ClusterError:
                    # Two settings in one user data: which token it uses is unknown, so none may be swept.
                    unreadable.append(instance["InstanceId"])
                    continue
                if found.get("url"):
                    referenced.append(found["url"])
            step = "read the launch records and locks of the region's clusters"
            tagged = _groups(client, {"tag-key": CLUSTER_TAG_KEY})
            referenced += [_tags(g)[PENDING_DISCOVERY_TAG_KEY] for g in tagged
                           if _tags(g).get(PENDING_DISCOVERY_TAG_KEY) and _tags(g).get(CLUSTER_TAG_KEY) != name]
            locked = sorted(g["GroupName"] for g in tagged if LOCK_TAG_KEY in _tags(g))
            blocked = (f"a launch or scale holds a lock ({', '.join(locked)})" if locked else
                       f"the user data of {', '.join(unreadable)} names two discovery settings" if unreadable else "")
            result.update(referenced=referenced, locked=bool(locked), sweep_blocked=blocked)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if not is_botocore_error(exc):
            raise
        raise ClusterError(f"Failed to {step}: {exc}") from exc
    return result, []


def group_delete_argument_spec() -> dict[str, Any]:
    """The cluster_group_delete module's options (module and controller-side action plugin)."""
    return dict(
        group_id=dict(type="str", required=True),
        timeout=dict(type="int", default=150),
        delay=dict(type="float", default=5.0),
    )


def run_group_delete(client: Any, p: Mapping[str, Any], check_mode: bool = False,
                     sleep: Any = None) -> tuple[dict[str, Any], list[str]]:
    """Delete a security group; while AWS still counts it as used (DependencyViolation, for a while after its
    machines were terminated) try again every `delay` seconds up to `timeout`. Anything else fails at once with
    AWS's message; a group that is gone already is no change."""
    # pylint: disable=import-outside-toplevel
    import time

    sleep = sleep or time.sleep
    group_id = p["group_id"]

    waited = 0.0
    while True:
        try:
            if check_mode:
                client.describe_security_groups(GroupIds=[group_id])
            else:
                client.delete_security_group(GroupId=group_id)
            return {"changed": True, "group_id": group_id, "waited": waited,
                    "diff": {"before": {"security_group": group_id}, "after": {}}}, []
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if not is_botocore_error(exc):
                raise
            if aws_error_code(exc) == "InvalidGroup.NotFound":
                return {"changed": False, "group_id": group_id, "waited": waited, "diff": {"before": {}, "after": {}}}, []
            if aws_error_code(exc) != "DependencyViolation" or waited + p["delay"] > p["timeout"]:
                raise ClusterError(f"Failed to delete security group {group_id}"
                                   + (f" after {waited:.0f} s of DependencyViolation" if waited else "") + f": {exc}") from exc
        sleep(p["delay"])
        waited += p["delay"]
