#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_spec
short_description: Validate a cluster's inputs and derive its names, tags, filters and security group rules
version_added: 0.1.0
description:
  - Checks every input of a cluster launch before anything is created, and fails with a message that names the
    input and what is allowed.
  - Derives what the roles need to find and build the cluster, so they never disagree, the cluster tag, the
    instance filters, the security group name and its rules, the AMI owner and name pattern, and the
    architecture the instance type needs.
  - Runs on the controller and changes nothing.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
options:
  cluster_name:
    description: Name of the cluster; 1-63 letters, digits and inner hyphens.
    type: str
    required: true
  cluster_size:
    description:
      - Number of machines, from 1 to O(cluster_size_max). Strings of digits are accepted.
      - Omit it for operations on an existing cluster; C(size) and C(etcd_size) in RV(spec) are then null.
    type: raw
  cluster_size_max:
    description: The largest cluster this module accepts, a guard against typos.
    type: int
    default: 200
  etcd_members_max:
    description:
      - Most etcd members the cluster bootstraps with; the discovery token is sized min(O(cluster_size), this).
      - Machines beyond it join etcd as proxies. From 1 to 9; etcd recommends an odd number.
    type: int
    default: 5
  region:
    description: EC2 region; must be one botocore knows in the aws, aws-cn or aws-us-gov partitions.
    type: str
    required: true
  instance_type:
    description:
      - EC2 instance type, for example V(c5.large). Graviton types select arm64 images.
      - Omit it for operations on an existing cluster; C(architecture) in RV(spec) is then null.
    type: str
  channel:
    description: Flatcar release channel the AMI comes from.
    type: str
    default: stable
    choices: [stable, beta, alpha, lts]
  ssh_allowed_cidrs:
    description: CIDR blocks allowed to reach SSH; empty allows no SSH at all.
    type: list
    elements: str
    default: []
  ebs_volume_size:
    description: Size of each machine's data volume in GiB, within the limits of O(ebs_volume_type).
    type: int
    default: 100
  ebs_volume_type:
    description: EBS type of the data volume.
    type: str
    default: gp2
  extra_tags:
    description: Tags added to every resource of the cluster. Keys starting with C(aws:) and the cluster tag are refused.
    type: dict
    default: {}
  subnet_ids:
    description:
      - Subnets (of one VPC) to spread the machines over, round-robin, so over their zones. Empty lets EC2 choose
        (the default subnet of a zone of the default VPC).
      - Ids are checked here for their form only; the launch checks that they exist.
    type: list
    elements: str
    default: []
  market:
    description:
      - V(on-demand) machines, or V(spot) machines (one-time requests that terminate when interrupted), started
        through the cluster's launch template (C(launch_template_name) and C(launch_template_data) in RV(spec)).
    type: str
    default: on-demand
    choices: [on-demand, spot]
  spot_max_price:
    description: With O(market=spot), the highest price in USD per machine-hour, for example V(0.05); empty caps at the on-demand price.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Validate the launch inputs
  coreos_ec2.cluster.cluster_spec:
    cluster_name: p-1
    cluster_size: 3
    region: us-east-1
    instance_type: c5.large
    ssh_allowed_cidrs: [203.0.113.0/24]
  register: spec
"""

RETURN = r"""
spec:
  description: The validated, normalised cluster description.
  returned: success
  type: dict
  sample:
    name: p-1
    size: 3
    etcd_size: 3
    region: us-east-1
    instance_type: c5.large
    architecture: x86_64
    channel: stable
    ami_owner: "075585003325"
    ami_name_pattern: Flatcar-stable-*
    tag_key: coreos-ec2-cluster
    tags: {coreos-ec2-cluster: p-1, managed-by: coreos_ec2.cluster}
    instance_filters: {"tag:coreos-ec2-cluster": p-1, instance-state-name: [pending, running, stopping, stopped]}
    security_group_name: coreos-ec2-p-1
    security_group_rules:
      - {proto: tcp, ports: ["22"], cidr_ip: 203.0.113.0/24, rule_desc: SSH}
    ssh_allowed_cidrs: [203.0.113.0/24]
    ebs_volume_size: 100
    ebs_volume_type: gp2
    subnet_ids: []
    market: on-demand
    spot_max_price: ""
    launch_template_name: coreos-ec2-p-1
    launch_template_data: {}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import run_cluster_spec, spec_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(argument_spec=spec_argument_spec(), supports_check_mode=True)
    try:
        result, warnings = run_cluster_spec(module.params)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
