#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_volumes_info
short_description: Describe many EBS volumes with one API call
version_added: 0.1.0
description:
  - Returns size, type, state, encryption and attachment of the given EBS volumes with a single C(DescribeVolumes)
    call, for the cluster's inspect and scale operations.
  - Reads only the fields every EC2 endpoint returns.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
options:
  volume_ids:
    description: IDs of the volumes to describe. An empty list returns no volumes without calling AWS.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Describe the data volumes of a cluster
  coreos_ec2.cluster.cluster_volumes_info:
    volume_ids: [vol-0123456789abcdef0, vol-0fedcba9876543210]
  register: vol_info

- name: Show each machine row with the size of its data volume
  ansible.builtin.debug:
    msg: "{{ rows | coreos_ec2.cluster.add_volume_sizes(vol_info.volumes) }}"
"""

RETURN = r"""
volumes:
  description: One entry per volume, in the order AWS returns them.
  returned: always
  type: list
  elements: dict
  sample:
    - id: vol-0123456789abcdef0
      size: 100
      type: gp2
      state: in-use
      encrypted: true
      instance_id: i-0123456789abcdef0
      device: /dev/sdb
      delete_on_termination: true
      tags: {coreos-ec2-cluster: p-1}
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._machine_data import run_volumes_info, volumes_info_argument_spec


def main() -> None:
    run_aws_module(volumes_info_argument_spec(), run_volumes_info, passes_check_mode=False)


if __name__ == "__main__":
    main()
