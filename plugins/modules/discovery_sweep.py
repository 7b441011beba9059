#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: discovery_sweep
short_description: Delete the discovery tokens that no machine or interrupted launch uses, from an etcd you own
version_added: 0.3.0
description:
  - Lists the tokens under C(/_etcd/registry) of the etcd at O(service) (v2 keys API) and deletes every one whose
    name no URL in O(referenced) carries. The caller gathers O(referenced) from every machine's user data and from
    the discovery URLs recorded on security groups, in the whole region, not only one cluster's.
  - Meant for an etcd that only holds this collection's tokens, such as the sandbox's; the C(ops) role's
    C(cleanup) runs it there. Never point it at an etcd that other tools keep tokens in.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.discovery, coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff]
attributes:
  check_mode:
    description: Reports the orphans it would delete.
  diff_mode:
    description: Shows the number of tokens before and after.
options:
  service:
    description: The client URL of the etcd that keeps the tokens, for example V(http://127.0.0.1:4001).
    type: str
    required: true
  referenced:
    description: Discovery URLs in use (public or V(etcd_v2) form); their tokens are kept.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Delete the sandbox's orphaned tokens
  coreos_ec2.cluster.discovery_sweep:
    service: http://127.0.0.1:4001
    referenced: "{{ urls_in_use }}"
  no_log: true
"""

RETURN = r"""
removed:
  description: How many orphaned tokens were deleted (in check mode, would be).
  returned: always
  type: int
kept:
  description: How many tokens are in use and were kept.
  returned: always
  type: int
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.sweep import run_sweep, sweep_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(argument_spec=sweep_argument_spec(), supports_check_mode=True)
    try:
        result, dummy = run_sweep(module.params, check_mode=module.check_mode)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
