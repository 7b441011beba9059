#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_cleanup_info
short_description: Read what a cluster's cleanup needs to know, in one run
version_added: 0.3.0
description:
  - Reads the cluster's security group (by name and cluster tag) and the machines outside the cluster that still
    use it (cleanup then keeps the group and names them). The ops role's inspect reads the group with it too.
  - With O(sweep=true), also every discovery URL that a machine of another cluster or none (in any state but
    terminated) carries in its user data or that an interrupted launch of another cluster recorded on its security
    group, and whether a launch or scale holds a cluster's lock; the sandbox's cleanup, after removing this
    cluster, deletes the tokens no one else names, unless RV(sweep_blocked).
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
options:
  cluster_name:
    description: The cluster; only a group with the tag C(coreos-ec2-cluster=<cluster_name>) is the cluster's.
    type: str
    required: true
  security_group_name:
    description: The cluster's security group name.
    type: str
    required: true
  sweep:
    description: Also read the region's discovery URLs and locks (RV(referenced), RV(locked), RV(sweep_blocked)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Read what the cleanup of cluster p-1 removes or keeps
  coreos_ec2.cluster.cluster_cleanup_info:
    cluster_name: p-1
    security_group_name: coreos-ec2-p-1
  register: found
"""

RETURN = r"""
security_groups:
  description: The cluster's security group (zero or one), as M(amazon.aws.ec2_security_group_info) lists it.
  returned: always
  type: list
  elements: dict
foreign:
  description: Ids of the machines without the cluster's tag that still use its security group.
  returned: always
  type: list
  elements: str
referenced:
  description: With O(sweep=true), every discovery URL still named in the region. Secrets.
  returned: always
  type: list
  elements: str
locked:
  description: With O(sweep=true), whether any cluster's launch or scale holds its lock.
  returned: always
  type: bool
sweep_blocked:
  description: With O(sweep=true), why no token may be swept now (a lock held, unreadable user data); empty otherwise.
  returned: always
  type: str
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import cleanup_info_argument_spec, run_cleanup_info


def main() -> None:
    run_aws_module(cleanup_info_argument_spec(), run_cleanup_info, passes_check_mode=False)


if __name__ == "__main__":
    main()
