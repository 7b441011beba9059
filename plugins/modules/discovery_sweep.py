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

import json
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import REGISTRY_PREFIX
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import (
    HttpStatusError,
    Transport,
    transport_argument_spec,
    transport_options,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.sweep import orphan_tokens, registry_tokens
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            service=dict(type="str", required=True),
            referenced=dict(type="list", elements="str", default=[], no_log=True),
            **transport_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    transport = Transport(**transport_options(p))
    base = p["service"].rstrip("/") + "/v2/keys" + REGISTRY_PREFIX
    try:
        try:
            listing = json.loads(transport.request("GET", base)[1])
        except HttpStatusError as exc:
            if exc.code != 404:
                raise
            listing = {}
        tokens = registry_tokens(listing)
        orphans = orphan_tokens(tokens, p["referenced"])
        if not module.check_mode:
            for token in orphans:
                try:
                    transport.request("DELETE", f"{base}/{token}?{urlencode({'recursive': 'true', 'dir': 'true'})}")
                except HttpStatusError as exc:
                    if exc.code != 404:  # gone already: another cleanup was quicker
                        raise
    except ClusterError as exc:
        module.fail_json(msg=f"Failed to sweep the discovery tokens at {p['service']}: {exc.msg}")
    except (HttpStatusError, OSError, ValueError) as exc:
        module.fail_json(msg=f"Failed to sweep the discovery tokens at {p['service']}: {exc}")
    result = dict(changed=bool(orphans), removed=len(orphans), kept=len(tokens) - len(orphans))
    if module._diff:
        result["diff"] = {"before": {"tokens": len(tokens)}, "after": {"tokens": len(tokens) - len(orphans)}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
