# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the launch and deploy roles tell the user at the end of a run, as plain functions the roles' filters call.

Kept out of Jinja so that every sentence a run prints, and the choice between them, is tested.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence


def launch_summary(cluster: Mapping[str, Any], check_mode: bool = False, size: int = 0,
                   ssh_allowed_cidrs: Sequence[str] = ()) -> List[str]:
    """The launch's last words: a headline, one line per machine (DNS name, state, id), and notes."""
    where = f"{cluster.get('name')} ({cluster.get('target')}, {cluster.get('region')})"
    instances = list(cluster.get("instances") or [])
    if check_mode:
        headline = (f"Check mode: cluster {where} would have {size} machines from image {cluster.get('image_id')}; "
                    "nothing was created")
    else:
        headline = (f"Cluster {where}: {len(instances)} machines, image {cluster.get('image_id')}, security group "
                    f"{cluster.get('security_group_id')}")
    rows = [f"{i.get('public_dns_name', '')}  {i.get('state', '')}  {i.get('id', '')}" for i in instances]
    notes = [] if ssh_allowed_cidrs else ["Note: ssh_allowed_cidrs is empty, so the security group admits no SSH."]
    return [headline] + rows + notes


def rollback_message(cluster_name: str, failure: str, keep: bool, machines_tag: str = "", security_group: str = "",
                     token: bool = False) -> str:
    """The message a failed launch ends with: where it failed, and what it removed or kept.

    machines_tag names the machines this run started (tag key=value) when they were removed or kept; security_group
    the group it created; token whether it minted a token it could delete.
    """
    parts = ([f"machines tagged {machines_tag}"] if machines_tag else []) + (
        [f"security group {security_group}"] if security_group else []) + (["the new discovery token"] if token else [])
    done = "Kept for inspection (keep_on_failure=true): " if keep else "Rolled back: "
    return f"Launch of cluster {cluster_name} failed at {failure}. {done}{'; '.join(parts) or 'nothing had been created'}."


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
