#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/cluster_wait.py, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_wait
short_description: Wait until a cluster's machines are listed and running, with a progress line per poll
version_added: 0.3.0
description:
  - Polls with one C(DescribeInstances) for all machines matching O(filters) until exactly O(count) are listed and
    every one runs (AWS lists new machines eventually, and fills in their public DNS names once they run).
  - Prints a progress line whenever the count changes, and every half minute otherwise, with how many of the
    machines run, the others by state, and the seconds so far.
  - Runs on the controller with boto3 (no module process); throttling is retried by botocore with backoff.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
options:
  cluster_name:
    description: The cluster, for the progress lines.
    type: str
    required: true
  filters:
    description: C(DescribeInstances) filters that select the cluster's machines, as a dict.
    type: dict
    required: true
  count:
    description: How many machines the cluster has when done.
    type: int
    required: true
  timeout:
    description: Seconds to wait before failing with the last progress line.
    type: int
    default: 600
  delay:
    description: Seconds between polls.
    type: float
    default: 5
  endpoint_url:
    description: The EC2 endpoint (the sandbox's, or a custom one); botocore's default when omitted.
    type: str
  access_key:
    description: AWS access key; boto3's credential chain when omitted.
    type: str
  secret_key:
    description: AWS secret key.
    type: str
  session_token:
    description: AWS session token.
    type: str
  profile:
    description: A named AWS profile.
    type: str
  region:
    description: The region.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Wait for the three machines of cluster p-1
  coreos_ec2.cluster.cluster_wait:
    cluster_name: p-1
    filters: {"tag:coreos-ec2-cluster": p-1, instance-state-name: [pending, running]}
    count: 3
"""

RETURN = r"""
instances:
  description: The machines, as M(amazon.aws.ec2_instance_info) returns them.
  returned: success
  type: list
  elements: dict
rows:
  description: The machines as rows (id, state, instance_type, availability_zone, private_ip, public_ip, ...).
  returned: success
  type: list
  elements: dict
polls:
  description: How many C(DescribeInstances) polls the wait took.
  returned: success
  type: int
seconds:
  description: How long the wait took.
  returned: success
  type: float
"""
