#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_group_delete
short_description: Delete a cluster's security group, waiting out DependencyViolation
version_added: 0.3.0
description:
  - Deletes the security group O(group_id). Right after its machines are terminated AWS still counts the group as
    in use and answers C(DependencyViolation) for a while; only that is tried again, every O(delay) seconds for up
    to O(timeout) seconds. Anything else (a missing permission, say) fails at once with AWS's message. A group that
    is gone already is no change.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
attributes:
  check_mode:
    description: Reads the group; deletes nothing.
  diff_mode:
    description: Shows the group going.
options:
  group_id:
    description: The security group's id.
    type: str
    required: true
  timeout:
    description: Seconds to keep trying while AWS answers C(DependencyViolation).
    type: int
    default: 150
  delay:
    description: Seconds between tries.
    type: float
    default: 5.0
"""

EXAMPLES = r"""
- name: Delete cluster p-1's security group
  coreos_ec2.cluster.cluster_group_delete:
    group_id: sg-0123456789abcdef0
"""

RETURN = r"""
group_id:
  description: The group.
  returned: success
  type: str
waited:
  description: Seconds spent waiting while AWS still counted the group as in use.
  returned: success
  type: float
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import group_delete_argument_spec, run_group_delete


def main() -> None:
    run_aws_module(group_delete_argument_spec(), run_group_delete)


if __name__ == "__main__":
    main()
