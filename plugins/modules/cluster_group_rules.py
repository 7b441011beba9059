#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_group_rules
short_description: Give a cluster's security group exactly the cluster's rules
version_added: 0.3.0
description:
  - Sets the ingress rules of the cluster's security group O(security_group_name) to exactly O(rules), leaves it
    only the all-traffic egress rule, and adds O(tags) (tags are never removed, so the group keeps its lock and a
    launch's pending discovery URL).
  - Reads the group with one C(DescribeSecurityGroups) and makes only the calls the difference needs, extra rules
    revoked before missing ones are authorized, so the group never lets in more than the old and new rules
    together. A rule that differs only in its description has the description updated in place. An unchanged
    group is no change and costs that one call.
  - The group must exist (M(coreos_ec2.cluster.cluster_lock) creates it) and carry the tag
    C(coreos-ec2-cluster=<cluster_name>); a group of that name that is not the cluster's is refused. Right after
    the group is created AWS may not know it yet in the calls that follow; C(InvalidGroup.NotFound) and
    throttling are tried again with backoff.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
attributes:
  check_mode:
    description: Reads the group and reports the changes; a group that does not exist yet is shown as it would be.
  diff_mode:
    description: Shows the group's ingress and egress rules and tags before and after.
options:
  cluster_name:
    description: The cluster. The group must carry the tag C(coreos-ec2-cluster=<cluster_name>).
    type: str
    required: true
  security_group_name:
    description: The cluster's security group.
    type: str
    required: true
  vpc_id:
    description: The group's VPC, when group names may repeat across VPCs.
    type: str
  rules:
    description:
      - The ingress rules, in the form M(amazon.aws.ec2_security_group) takes them (C(proto), C(ports), one of
        C(cidr_ip), C(cidr_ipv6) or C(group_name) for the group itself, C(rule_desc)); the result of
        M(coreos_ec2.cluster.cluster_spec) has the cluster's as C(spec.security_group_rules).
    type: list
    elements: dict
    required: true
  tags:
    description: Tags the group must carry (added or updated; others stay).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Set the rules of cluster p-1's security group
  coreos_ec2.cluster.cluster_group_rules:
    cluster_name: p-1
    security_group_name: coreos-ec2-p-1
    rules: "{{ spec.spec.security_group_rules }}"
    tags: "{{ spec.spec.tags }}"
"""

RETURN = r"""
group_id:
  description: The group's id; empty in check mode when the group does not exist yet.
  returned: always
  type: str
  sample: sg-0123456789abcdef0
vpc_id:
  description: The group's VPC.
  returned: always
  type: str
authorized:
  description: The rules added (ingress, then egress), as text.
  returned: always
  type: list
  elements: str
  sample: ["tcp 22 198.51.100.0/24 (SSH)"]
revoked:
  description: The rules removed, as text.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._group_rules import group_rules_argument_spec, run_group_rules


def main() -> None:
    run_aws_module(group_rules_argument_spec(), run_group_rules)


if __name__ == "__main__":
    main()
