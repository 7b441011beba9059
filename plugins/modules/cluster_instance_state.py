#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_instance_state
short_description: Start, stop or terminate all machines of a cluster with batched EC2 calls
version_added: 0.1.0
description:
  - Brings every machine carrying the tag C(coreos-ec2-cluster=<cluster_name>), or the machines given by
    O(instance_ids), to O(state), and waits for them.
  - Reads all machines with one C(DescribeInstances), acts on every machine that can move now with one
    C(StartInstances), C(StopInstances) or C(TerminateInstances) call per 100 machines, and waits with one
    C(DescribeInstances) per poll. Machines still on their way (C(pending), C(stopping)) are waited for first.
  - Retries throttling and the C(InvalidInstanceID.NotFound) that EC2 answers for a while after a launch.
  - Machines that do not carry the cluster's tag are never selected by O(cluster_name).
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
attributes:
  check_mode:
    description: Reads the machines and reports which would change.
  diff_mode:
    description: Shows each machine's state before and after.
options:
  cluster_name:
    description: The cluster whose machines to change. Mutually exclusive with O(instance_ids).
    type: str
  instance_ids:
    description: The machines to change. Mutually exclusive with O(cluster_name). An empty list changes nothing.
    type: list
    elements: str
  state:
    description: The state every machine is brought to.
    type: str
    required: true
    choices: [running, stopped, terminated]
  wait:
    description: Whether to wait until every machine has reached O(state).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait before failing with the machines that have not arrived.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Stop cluster p-1
  coreos_ec2.cluster.cluster_instance_state:
    cluster_name: p-1
    state: stopped

- name: Terminate two machines
  coreos_ec2.cluster.cluster_instance_state:
    instance_ids: [i-0123456789abcdef0, i-0fedcba9876543210]
    state: terminated
"""

RETURN = r"""
changed_ids:
  description: The machines this run sent to O(state) (in check mode, those it would send).
  returned: always
  type: list
  elements: str
  sample: [i-0123456789abcdef0]
instances:
  description:
    - The machines after the change, oldest first, as rows (id, state, instance_type, availability_zone,
      private_ip, public_ip, public_dns_name, launch_time, volume_id, volume_status).
    - In check mode and with O(wait=false), the machines as they were read.
  returned: always
  type: list
  elements: dict
  sample:
    - id: i-0123456789abcdef0
      state: stopped
      instance_type: c4.large
      availability_zone: us-east-1a
      private_ip: 10.0.0.12
      public_ip: ""
      public_dns_name: ""
      launch_time: "2026-11-25T10:00:00+00:00"
      volume_id: vol-0123456789abcdef0
      volume_status: attached
"""

import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_filters, instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instances import (
    API_CALL,
    batches,
    describe_states,
    needs_action,
    poll_delays,
    state_plan,
    unreachable_message,
)

# Right after RunInstances, EC2 may not know the new ids for a while: that answer is retried like throttling.
RETRY = AWSRetry.jittered_backoff(retries=10, catch_extra_error_codes=["InvalidInstanceID.NotFound"])


@RETRY
def _describe(client, **kwargs):
    pages = client.get_paginator("describe_instances").paginate(**kwargs).build_full_result()
    return [camel_dict_to_snake_dict(i) for r in pages.get("Reservations", []) for i in r.get("Instances", [])]


def _filters(mapping):
    return [{"Name": name, "Values": value if isinstance(value, list) else [value]} for name, value in mapping.items()]


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            cluster_name=dict(type="str"),
            instance_ids=dict(type="list", elements="str"),
            state=dict(type="str", required=True, choices=["running", "stopped", "terminated"]),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=600),
        ),
        required_one_of=[["cluster_name", "instance_ids"]],
        mutually_exclusive=[["cluster_name", "instance_ids"]],
        supports_check_mode=True,
    )
    p = module.params
    target = p["state"]
    if p["instance_ids"] is not None and not p["instance_ids"]:
        module.exit_json(changed=False, changed_ids=[], instances=[])
    client = module.client("ec2", retry_decorator=RETRY)

    def describe(ids=None):
        try:
            if ids is not None:
                return instance_rows(_describe(client, InstanceIds=ids))
            states = ["pending", "running", "stopping", "stopped"] + (["shutting-down"] if target == "terminated" else [])
            return instance_rows(_describe(client, Filters=_filters(instance_filters(p["cluster_name"], states))))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            module.fail_json_aws(e, msg="Failed to describe the machines")

    rows = describe(p["instance_ids"])
    before = describe_states(rows)
    ids = [r["id"] for r in rows]
    plan = state_plan(rows, target)
    if plan["unreachable"]:
        module.fail_json(msg=unreachable_message(plan["unreachable"], target), instances=rows)
    work = needs_action(plan, before, target)
    diff = {"before": before, "after": {i: target for i in ids}}
    if module.check_mode or not (plan["act"] or plan["wait"]) or (not work and not p["wait"]):
        module.exit_json(changed=bool(work), changed_ids=work, instances=rows, diff=diff)

    acted: set = set()
    api = getattr(client, API_CALL[target])
    delays = poll_delays(p["wait_timeout"])
    while True:
        for batch in batches(plan["act"]):
            try:
                api(aws_retry=True, InstanceIds=batch)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                module.fail_json_aws(e, msg=f"Failed to bring {', '.join(batch)} to {target}"
                                     + (f" (already sent there: {', '.join(sorted(acted))})" if acted else ""))
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
            module.fail_json(
                msg=f"Waited {p['wait_timeout']} s for {len(late)} machines to reach {target}: "
                    + ", ".join(f"{i} is {s}" for i, s in sorted(late.items())),
                changed=bool(acted), changed_ids=sorted(acted), instances=rows)
        time.sleep(delay)
        rows = describe(ids)
        plan = state_plan(rows, target)
        if plan["unreachable"]:
            module.fail_json(msg=unreachable_message(plan["unreachable"], target), changed=bool(acted),
                             changed_ids=sorted(acted), instances=rows)
    changed = bool(acted or work)
    module.exit_json(changed=changed, changed_ids=sorted(acted | set(work)), instances=rows,
                     diff=diff if changed else {"before": before, "after": before})


if __name__ == "__main__":
    main()
