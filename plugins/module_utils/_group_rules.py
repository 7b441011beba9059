# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's security group rules: exactly the cluster's ingress rules, only the all-traffic egress rule, and
the cluster's tags added (never removed: the lock and the pending discovery URL are tags of the group too).

cluster_lock creates the group (atomically, with its lock); this sets what it lets in. It compares the group as one
DescribeSecurityGroups returns it with the rules cluster_spec computes, then makes only the calls the difference
needs: revoke what is extra, authorize what is missing, update a description that changed, tag what differs. An
unchanged group costs that one describe (a re-run reads it in cluster_lookup already and skips this step).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import (
    ClusterError,
    aws_error_code,
    aws_error_text,
    is_botocore_error,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import group_tags
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._retry import retry_call

# One permission: (protocol, from port, to port, source kind, source, description). Kinds: cidr, cidr6, group.
Permission = tuple

ALL_EGRESS: Permission = ("-1", None, None, "cidr", "0.0.0.0/0", "")

# Right after CreateSecurityGroup, AWS may not know the group yet in the calls that follow (eventual consistency).
_NOT_YET = {"InvalidGroup.NotFound", "InvalidGroupId.NotFound", "RequestLimitExceeded", "Throttling"}

# The calls before a failing one took effect; a re-run reads the group afresh and makes the rest.
_PARTIAL = " (the calls before this one took effect; running the launch again completes the rules)"


def group_rules_argument_spec() -> dict[str, Any]:
    """The cluster_group_rules module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        security_group_name=dict(type="str", required=True),
        vpc_id=dict(type="str"),
        rules=dict(type="list", elements="dict", required=True),
        tags=dict(type="dict", default={}),
    )


def wanted_permissions(rules: Iterable[Mapping[str, Any]], group_id: str) -> set[Permission]:
    """The ingress permissions the cluster's rules (cluster_spec's security_group_rules, in the form
    amazon.aws.ec2_security_group takes) ask for, one per port range and source. A rule without a CIDR names the
    group itself (group_name): the cluster's own traffic."""
    wanted = set()
    for rule in rules:
        for ports in rule.get("ports") or []:
            low, dummy, high = str(ports).partition("-")
            if rule.get("cidr_ip"):
                source = ("cidr", rule["cidr_ip"])
            elif rule.get("cidr_ipv6"):
                source = ("cidr6", rule["cidr_ipv6"])
            else:
                source = ("group", group_id)
            wanted.add((rule["proto"], int(low), int(high or low)) + source + (rule.get("rule_desc") or "",))
    return wanted


def current_permissions(permissions: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """The same tuples from DescribeSecurityGroups' IpPermissions (or IpPermissionsEgress)."""
    current = set()
    for perm in permissions:
        head = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort"))
        current |= {head + ("cidr", r.get("CidrIp"), r.get("Description") or "") for r in perm.get("IpRanges") or []}
        current |= {head + ("cidr6", r.get("CidrIpv6"), r.get("Description") or "") for r in perm.get("Ipv6Ranges") or []}
        current |= {head + ("group", r.get("GroupId"), r.get("Description") or "") for r in perm.get("UserIdGroupPairs") or []}
    return current


def _egress_is_all(permission: Permission) -> bool:
    # Any description: the rule AWS adds to a new group has none, one set by hand may have one.
    return (permission[0], permission[3], permission[4]) == ("-1", "cidr", "0.0.0.0/0")


def rules_plan(group: Mapping[str, Any], rules: Iterable[Mapping[str, Any]], tags: Mapping[str, Any]) -> dict[str, Any]:
    """What to change on a group (DescribeSecurityGroups' shape) so that it has exactly the rules: ingress to
    revoke, to authorize and to re-describe (same rule, other description), egress to revoke and authorize, tags
    to write. Empty lists and dict: nothing to do."""
    wanted = wanted_permissions(rules, group.get("GroupId", ""))
    current = current_permissions(group.get("IpPermissions") or [])
    # A rule differing only in its description is the same rule to AWS: its description is updated in place
    # (revoking it first would close the port for a moment, authorizing it first is a duplicate).
    wanted_by_key = {p[:5]: p for p in wanted}
    current_keys = {p[:5] for p in current}
    egress = current_permissions(group.get("IpPermissionsEgress") or [])
    present = group_tags(group)
    return {
        "revoke": sorted((p for p in current if p[:5] not in wanted_by_key), key=_order),
        "authorize": sorted((p for p in wanted if p[:5] not in current_keys), key=_order),
        "describe": sorted((p for k, p in wanted_by_key.items() if k in current_keys and p not in current), key=_order),
        "revoke_egress": sorted((p for p in egress if not _egress_is_all(p)), key=_order),
        "authorize_egress": [] if any(_egress_is_all(p) for p in egress) else [ALL_EGRESS],
        "tags": {str(k): str(v) for k, v in tags.items() if present.get(str(k)) != str(v)},
    }


def group_is_current(group: Mapping[str, Any], rules: Iterable[Mapping[str, Any]], tags: Mapping[str, Any]) -> bool:
    """Whether the group already has exactly the cluster's ingress rules, only the all-traffic egress rule, and
    the cluster's tags: then a re-run need not set the rules."""
    return not any(rules_plan(group, rules, tags).values())


def _order(permission: Permission) -> tuple:
    return tuple("" if v is None else str(v) for v in permission)


def ip_permission(permission: Permission) -> dict[str, Any]:
    """One permission tuple as an IpPermissions item of Authorize/RevokeSecurityGroupIngress/Egress."""
    proto, low, high, kind, source, description = permission
    item: dict[str, Any] = {"IpProtocol": proto}
    if low is not None:
        item.update(FromPort=low, ToPort=high)
    entry = {"cidr": "CidrIp", "cidr6": "CidrIpv6", "group": "GroupId"}[kind]
    ranges = {"cidr": "IpRanges", "cidr6": "Ipv6Ranges", "group": "UserIdGroupPairs"}[kind]
    item[ranges] = [dict({entry: source}, **({"Description": description} if description else {}))]
    return item


def rule_text(permission: Permission) -> str:
    """A permission for a person (diff, results): 'tcp 22 from 10.0.0.0/8 (SSH)', 'all to 0.0.0.0/0'."""
    proto, low, high, kind, source, description = permission
    ports = "" if low is None or proto == "-1" else (f" {low}" if low == high else f" {low}-{high}")
    where = "the group itself" if kind == "group" else source
    return f"{'all' if proto == '-1' else proto}{ports} {where}" + (f" ({description})" if description else "")


def _view(ingress: Iterable[Permission], egress: Iterable[Permission], tags: Mapping[str, Any]) -> dict[str, Any]:
    """A group as the diff shows it: its rules as text, its tags."""
    return {
        "ingress": [rule_text(p) for p in sorted(ingress, key=_order)],
        "egress": [rule_text(p) for p in sorted(egress, key=_order)],
        "tags": dict(sorted((str(k), str(v)) for k, v in tags.items())),
    }


def _state(group: Mapping[str, Any]) -> dict[str, Any]:
    """A described group (DescribeSecurityGroups' shape) as the diff shows it."""
    return _view(current_permissions(group.get("IpPermissions") or []),
                 current_permissions(group.get("IpPermissionsEgress") or []), group_tags(group))


def _retryable(exc: BaseException) -> bool:
    return is_botocore_error(exc) and aws_error_code(exc) in _NOT_YET


def run_group_rules(client: Any, p: Mapping[str, Any], check_mode: bool = False,
                    sleep: Callable[[float], object] = time.sleep) -> tuple[dict[str, Any], list[str]]:
    """Give the cluster's security group exactly its rules and add its tags; returns the result and warnings,
    raises ClusterError. The group must exist and carry the cluster's tag, except in check mode, where a missing
    group (cluster_lock has not created it, in check mode) is shown as created."""
    name = p["security_group_name"]
    filters = [{"Name": "group-name", "Values": [name]}]
    if p.get("vpc_id"):
        filters.append({"Name": "vpc-id", "Values": [p["vpc_id"]]})
    try:
        groups = retry_call(lambda: client.describe_security_groups(Filters=filters)["SecurityGroups"],
                            is_retryable=_retryable, sleep=sleep)
    except Exception as e:  # pylint: disable=broad-exception-caught
        if not is_botocore_error(e):
            raise
        raise ClusterError(f"Failed to read security group {name}: {aws_error_text(e)}") from None
    if not groups:
        if not check_mode:
            raise ClusterError(f"security group {name} does not exist{' in ' + p['vpc_id'] if p.get('vpc_id') else ''}"
                               f" (cluster_lock creates it)")
        after = _view(wanted_permissions(p["rules"], ""), [ALL_EGRESS], p["tags"])
        return dict(changed=True, group_id="", vpc_id=p.get("vpc_id") or "", authorized=after["ingress"], revoked=[],
                    diff={"before": {}, "after": after}), []
    group = groups[0]
    if group_tags(group).get(CLUSTER_TAG_KEY) != p["cluster_name"]:
        raise ClusterError(
            f"security group {name} ({group['GroupId']}) exists but does not belong to cluster {p['cluster_name']}"
            f" (no {CLUSTER_TAG_KEY}={p['cluster_name']} tag): refusing to change its rules")
    group_id = group["GroupId"]
    plan = rules_plan(group, p["rules"], p["tags"])
    changed = any(plan.values())
    result = dict(changed=changed, group_id=group_id, vpc_id=group.get("VpcId", ""),
                  authorized=[rule_text(x) for x in plan["authorize"] + plan["authorize_egress"]],
                  revoked=[rule_text(x) for x in plan["revoke"] + plan["revoke_egress"]])
    if changed:
        egress = current_permissions(group.get("IpPermissionsEgress") or [])
        result["diff"] = {
            "before": _state(group),
            "after": _view(wanted_permissions(p["rules"], group_id),
                           {x for x in egress if x not in plan["revoke_egress"]} | set(plan["authorize_egress"]),
                           dict(group_tags(group), **plan["tags"])),
        }
    if check_mode or not changed:
        return result, []

    def call(step: str, func: Callable[[], Any], tolerated: str = "") -> None:
        try:
            retry_call(func, is_retryable=_retryable, sleep=sleep)
        except Exception as e:  # pylint: disable=broad-exception-caught
            if not is_botocore_error(e):
                raise
            # Another run of the same cluster did it a moment ago: the group is as wanted.
            if tolerated and aws_error_code(e) == tolerated:
                return
            raise ClusterError(f"Failed to {step} {name} ({group_id}): {aws_error_text(e)}{_PARTIAL}") from None

    def rules(step: str, method: str, permissions: list[Permission], tolerated: str = "") -> None:
        if permissions:
            call(f"{step} on security group", lambda: getattr(client, method)(
                GroupId=group_id, IpPermissions=[ip_permission(x) for x in permissions]), tolerated)

    # Revoke first: a group never holds more than the old and the new rules' union, and never lets more in than asked.
    rules("revoke ingress rules", "revoke_security_group_ingress", plan["revoke"], "InvalidPermission.NotFound")
    rules("revoke egress rules", "revoke_security_group_egress", plan["revoke_egress"], "InvalidPermission.NotFound")
    rules("authorize ingress rules", "authorize_security_group_ingress", plan["authorize"], "InvalidPermission.Duplicate")
    rules("authorize the egress rule", "authorize_security_group_egress", plan["authorize_egress"], "InvalidPermission.Duplicate")
    rules("update rule descriptions", "update_security_group_rule_descriptions_ingress", plan["describe"])
    if plan["tags"]:
        call("tag security group", lambda: client.create_tags(
            Resources=[group_id], Tags=[{"Key": k, "Value": v} for k, v in plan["tags"].items()]))
    return result, []
