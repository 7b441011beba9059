#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_user_data_info
short_description: One machine of a cluster with its user data
version_added: 0.3.0
description:
  - Returns the first machine of O(instance_ids), or, without them, a machine that carries (or carried, terminated
    machines stay listed for a while) the tag C(coreos-ec2-cluster=<cluster_name>), with its user data, in the shape
    of M(amazon.aws.ec2_instance_info) with C(include_attributes=[userData]). Two EC2 calls.
  - The ops role reads the cluster's discovery setting from it, and scale copies new machines from it.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
options:
  cluster_name:
    description: The cluster whose machine to read when O(instance_ids) is empty.
    type: str
    required: true
  instance_ids:
    description: Machines of the cluster; the first is read.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Read one machine of cluster p-1 with its user data
  coreos_ec2.cluster.cluster_user_data_info:
    cluster_name: p-1
  register: machine
  no_log: true
"""

RETURN = r"""
instances:
  description:
    - The machine (zero or one), as M(amazon.aws.ec2_instance_info) returns it, with C(attributes.user_data.value)
      (base64). The user data may hold secrets.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._machine_data import run_user_data_info, user_data_info_argument_spec


def main() -> None:
    run_aws_module(user_data_info_argument_spec(), run_user_data_info, passes_check_mode=False)


if __name__ == "__main__":
    main()
