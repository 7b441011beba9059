#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/cluster_machines_info.py, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_machines_info
short_description: Read a cluster's machines with one DescribeInstances, on the controller
version_added: 0.3.0
description:
  - Returns every instance matching O(filters) (all pages of one C(DescribeInstances)), as
    M(amazon.aws.ec2_instance_info) returns them and as rows, oldest first.
  - Runs on the controller with boto3, without a module process, so that C(status), C(dns) and the other operations
    cost one call and no extra process; throttling is retried by botocore with backoff.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
options:
  filters:
    description: C(DescribeInstances) filters, as a dict of name to value or list of values.
    type: dict
    required: true
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
- name: Read cluster p-1's machines
  coreos_ec2.cluster.cluster_machines_info:
    filters: {"tag:coreos-ec2-cluster": p-1, instance-state-name: [pending, running, stopping, stopped]}
    region: eu-west-1
  register: machines
"""

RETURN = r"""
instances:
  description: The machines, as M(amazon.aws.ec2_instance_info) returns them.
  returned: always
  type: list
  elements: dict
rows:
  description: The machines as rows (id, state, instance_type, availability_zone, private_ip, public_ip, ...), oldest first.
  returned: always
  type: list
  elements: dict
"""
