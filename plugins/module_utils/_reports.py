# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the launch and deploy roles tell the user at the end of a run, as plain functions the roles' filters call.

Kept out of Jinja so that every sentence a run prints, and the choice between them, is tested.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence


def launch_summary(cluster: Mapping[str, Any], check_mode: bool = False, size: int = 0,
                   ssh_allowed_cidrs: Sequence[str] = ()) -> List[str]:
    """The launch's last words: a headline, one line per machine (DNS name, state, id, zone, and spot for a spot
    machine), and notes."""
    where = f"{cluster.get('name')} ({cluster.get('target')}, {cluster.get('region')})"
    instances = list(cluster.get("instances") or [])
    if check_mode:
        headline = (f"Check mode: cluster {where} would have {size} machines from image {cluster.get('image_id')}; "
                    "nothing was created")
    else:
        headline = (f"Cluster {where}: {len(instances)} machines, image {cluster.get('image_id')}, security group "
                    f"{cluster.get('security_group_id')}")
    rows = [f"{i.get('public_dns_name', '')}  {i.get('state', '')}  {i.get('id', '')}"
            + (f"  {i['availability_zone']}" if i.get("availability_zone") else "")
            + ("  spot" if i.get("lifecycle") == "spot" else "") for i in instances]
    notes = [] if ssh_allowed_cidrs else ["Note: ssh_allowed_cidrs is empty, so the security group admits no SSH."]
    return [headline] + rows + notes


def rollback_message(cluster_name: str, failure: str, keep: bool, report: Mapping[str, Any]) -> str:
    """The message a failed launch ends with: where it failed, what it removed, what is left and how to remove it.

    report (from the launch role's rollback): machines (ids this run started), machines_removed, machines_error,
    listed/list_error (whether the cluster's machines could be listed), locked (whether this run got the lock, the
    only way it can have started machines), security_group (id it created), security_group_removed/_error,
    launch_template (name of the one it created), launch_template_removed/_error, token
    (whether it minted one), token_protocol, token_removed/_error, lock_error, cleanup (the command for the rest).
    """
    failure = failure.rstrip().rstrip(".")
    if report.get("checked"):
        return f"Launch of cluster {cluster_name} failed at {failure}. Check mode: nothing had been created."
    removed: list[str] = []
    left: list[str] = []
    ids = list(report.get("machines") or [])
    if ids:
        what = f"{len(ids)} machine{'s' if len(ids) != 1 else ''} ({', '.join(ids)})"
        if keep:
            left.append(what)
        elif report.get("machines_removed"):
            removed.append(what)
        else:
            left.append(f"{what}, not terminated: {_short(report.get('machines_error'))}")
    if report.get("locked") and not report.get("listed") and report.get("list_error"):
        left.append(f"any machine this run started (the cluster could not be listed: {_short(report['list_error'])})")
    group = report.get("security_group") or ""
    if group:
        if keep:
            left.append(f"security group {group}")
        elif report.get("security_group_removed"):
            removed.append(f"security group {group}")
        else:
            why = _short(report.get("security_group_error")) or "not deleted while machines may still use it"
            left.append(f"security group {group} ({why})")
    template = report.get("launch_template") or ""
    if template:
        if keep:
            left.append(f"launch template {template}")
        elif report.get("launch_template_removed"):
            removed.append(f"launch template {template}")
        else:
            why = _short(report.get("launch_template_error")) or "not deleted while machines may still use it"
            left.append(f"launch template {template} ({why})")
    if report.get("token"):
        if report.get("token_protocol") == "public":
            left.append("the new discovery token (the public discovery service cannot delete tokens; it is unused)")
        elif keep:
            left.append("the new discovery token")
        elif report.get("token_removed"):
            removed.append("the new discovery token")
        else:
            left.append(f"the new discovery token (not deleted: {_short(report.get('token_error'))})")
    if report.get("lock_error"):
        left.append(f"the cluster's lock (not released: {_short(report['lock_error'])}; a later run may take it over "
                    "with -e break_lock=true)")
    parts = [f"Launch of cluster {cluster_name} failed at {failure}."]
    if keep:
        parts.append("Kept for inspection (keep_on_failure=true):" if left else "Nothing had been created.")
        if left:
            parts.append("; ".join(left) + ".")
    else:
        parts.append(("Rolled back: " + "; ".join(removed) + ".") if removed else
                     "Nothing had been created." if not left else "Nothing was rolled back.")
        if left:
            parts.append("Left: " + "; ".join(left) + ".")
    if any(not item.startswith(("the new discovery token", "the cluster's lock")) for item in left):
        parts.append(f"Remove the rest with: {report.get('cleanup')}")
    return " ".join(parts)


def _short(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def deploy_result(outcome: Mapping[str, Any], skipped_reason: str = "") -> Dict[str, Any]:
    """The deploy role's result: skipped (and why), or what fleet_units did through which machine."""
    if skipped_reason:
        return {"skipped": True, "reason": skipped_reason}
    return {"skipped": False, "machine": outcome.get("machine"), "changed": outcome.get("changed"),
            "summary": outcome.get("summary"), "plan": outcome.get("plan"),
            "remote_commands": outcome.get("remote_commands")}


def deploy_message(result: Mapping[str, Any], check_mode: bool = False) -> str:
    if result.get("skipped"):
        return str(result.get("reason"))
    how = "Check mode, nothing was changed; planned through " if check_mode else "Deployed through "
    return f"{how}{result.get('machine')}: {result.get('summary')} ({result.get('remote_commands')} remote commands)"
