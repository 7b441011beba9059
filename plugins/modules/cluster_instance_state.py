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
  - Runs on the controller as an action plugin (no module process) with the same options.
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

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instance_state import (
    INSTANCE_STATE_OPTIONS,
    instance_state_argument_spec,
    run_instance_state,
)


def main() -> None:
    run_aws_module(instance_state_argument_spec(), run_instance_state,
                   failure_details=("changed", "changed_ids", "instances"), **INSTANCE_STATE_OPTIONS)


if __name__ == "__main__":
    main()
