# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_instance_state's work with an EC2 client: read, act in batches, wait with one describe per poll.

The decisions are _instances.py's; this talks to EC2 (boto3's client: the module's, or the controller's in the
action plugin, so start, stop, terminate and cleanup need no module process).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_filters, instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import (
    ClusterError,
    aws_error_code,
    aws_error_text,
    is_botocore_error,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instances import (
    API_CALL,
    TARGETS,
    batches,
    describe_states,
    needs_action,
    poll_delays,
    state_plan,
    unreachable_message,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._retry import retry_call

# Throttling the client's own retries handle (botocore's standard mode); right after RunInstances EC2 may not know
# the new ids for a while, which is retried here, as are throttling answers that outlast the client's retries.
RETRYABLE_CODES = {"InvalidInstanceID.NotFound", "RequestLimitExceeded", "Throttling", "ThrottlingException"}


def instance_state_argument_spec() -> dict[str, Any]:
    """The cluster_instance_state module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str"),
        instance_ids=dict(type="list", elements="str"),
        state=dict(type="str", required=True, choices=list(TARGETS)),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )


INSTANCE_STATE_OPTIONS = {
    "required_one_of": [["cluster_name", "instance_ids"]],
    "mutually_exclusive": [["cluster_name", "instance_ids"]],
}


def run_instance_state(client: Any, p: Mapping[str, Any], check_mode: bool = False,
                       sleep: Callable[[float], object] = time.sleep) -> tuple[dict[str, Any], list[str]]:
    """Bring the machines to p['state'] (waiting unless p['wait'] is false); raises ClusterError."""
    target = p["state"]
    if p["instance_ids"] is not None and not p["instance_ids"]:
        return {"changed": False, "changed_ids": [], "instances": []}, []

    def call(func: Callable[[], Any], what: str) -> Any:
        try:
            return retry_call(func, is_retryable=lambda e: aws_error_code(e) in RETRYABLE_CODES, attempts=8, sleep=sleep)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if not is_botocore_error(exc):
                raise
            raise ClusterError(f"Failed to {what}: {aws_error_text(exc)}") from exc

    def describe(ids: list[str] | None = None) -> list[dict[str, Any]]:
        if ids is not None:
            kwargs: dict[str, Any] = {"InstanceIds": ids}
        else:
            states = ["pending", "running", "stopping", "stopped"] + (["shutting-down"] if target == "terminated" else [])
            kwargs = {"Filters": [{"Name": k, "Values": v if isinstance(v, list) else [v]}
                                  for k, v in instance_filters(p["cluster_name"], states).items()]}
        pages = call(lambda: client.get_paginator("describe_instances").paginate(**kwargs).build_full_result(),
                     "describe the machines")
        return instance_rows([camel_dict_to_snake_dict(i) for r in pages.get("Reservations", [])
                              for i in r.get("Instances", [])])

    rows = describe(p["instance_ids"])
    before = describe_states(rows)
    ids = [r["id"] for r in rows]
    plan = state_plan(rows, target)
    if plan["unreachable"]:
        raise ClusterError(unreachable_message(plan["unreachable"], target), instances=rows)
    work = needs_action(plan, before, target)
    diff = {"before": before, "after": {i: target for i in ids}}
    if check_mode or not (plan["act"] or plan["wait"]) or (not work and not p["wait"]):
        return {"changed": bool(work), "changed_ids": work, "instances": rows, "diff": diff}, []

    acted: set = set()
    api = getattr(client, API_CALL[target])
    delays = poll_delays(p["wait_timeout"])
    while True:
        for batch in batches(plan["act"]):
            sent = f" (already sent there: {', '.join(sorted(acted))})" if acted else ""
            call(lambda batch=batch: api(InstanceIds=batch), f"bring {', '.join(batch)} to {target}{sent}")
            acted.update(batch)
        states = describe_states(rows)
        # Without wait, stay only for machines that still need an action once they leave pending or stopping.
        if not p["wait"] and not [i for i in needs_action(plan, states, target) if i not in plan["act"]]:
            break
        if not plan["act"] and not plan["wait"]:
            break
        delay = next(delays, None)
        if delay is None:
            late = {i: s for i, s in states.items() if s != target}
            raise ClusterError(
                f"Waited {p['wait_timeout']} s for {len(late)} machines to reach {target}: "
                + ", ".join(f"{i} is {s}" for i, s in sorted(late.items())),
                changed=bool(acted), changed_ids=sorted(acted), instances=rows)
        sleep(delay)
        rows = describe(ids)
        plan = state_plan(rows, target)
        if plan["unreachable"]:
            raise ClusterError(unreachable_message(plan["unreachable"], target), changed=bool(acted),
                               changed_ids=sorted(acted), instances=rows)
    changed = bool(acted or work)
    return {"changed": changed, "changed_ids": sorted(acted | set(work)), "instances": rows,
            "diff": diff if changed else {"before": before, "after": before}}, []
