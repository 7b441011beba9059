#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: discovery_token
short_description: Create, reuse or delete the etcd discovery token a cluster bootstraps with
version_added: 0.1.0
description:
  - Mints a new etcd discovery token for a cluster of O(size) members, from the public discovery service
    (U(https://discovery.etcd.io)) or from a self-hosted etcd through its v2 keys API or its v3 API.
  - When O(existing_user_data) shows that the cluster's running instances already carry a discovery setting,
    returns that one and mints nothing, so that new instances join the existing cluster instead of
    bootstrapping another.
  - With O(state=absent), deletes a token from a self-hosted etcd.
  - Runs on the controller as an action plugin (no module process) with the same options.
  - M(coreos_ec2.cluster.discovery_token_info) reads a token back (its size and registered members).
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.discovery, coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff]
attributes:
  check_mode:
    description:
      - With O(state=present), mints nothing and reports C(changed=true) with RV(discovery_url) and RV(token)
        empty, unless a setting is reused.
      - With O(state=absent), reads the token and reports whether it would be deleted.
  diff_mode:
    description: Returns whether the token exists before and after, as C(token_exists).
options:
  protocol:
    description:
      - V(public) asks a service speaking the protocol of U(https://discovery.etcd.io) (C(GET <service>/new?size=N))
        for a token URL, which members pass to C(--discovery).
      - V(etcd_v2) creates the token C(/_etcd/registry/<uuid>) with its C(_config/size) key on a self-hosted
        etcd through the v2 keys API (etcd 3.4 and 3.5 serve it with C(--enable-v2)); members pass the
        returned RV(discovery_url) to C(--discovery).
      - V(etcd_v3) writes C(/_etcd/registry/<token>/_config/size) through the v3 JSON gateway, the layout
        etcd 3.6 and later read for v3 discovery; members pass RV(token) to C(--discovery-token) and
        RV(endpoints) to C(--discovery-endpoints). An etcd with authentication enabled is not supported.
    type: str
    default: public
    choices: [public, etcd_v2, etcd_v3]
  state:
    description:
      - V(present) reuses the setting found in O(existing_user_data), or mints a new token.
      - V(absent) deletes the self-hosted token given by O(url) (V(etcd_v2)) or O(token) (V(etcd_v3)),
        with everything registered under it. The public service offers no way to delete a token.
    type: str
    default: present
    choices: [present, absent]
  service:
    description:
      - For V(public), the base URL of the discovery service; defaults to U(https://discovery.etcd.io).
      - For V(etcd_v2), the client URL of the etcd that hosts the tokens, for example V(http://10.0.0.5:2379);
        required with O(state=present).
      - For V(etcd_v3), a single client URL may be given here instead of O(endpoints).
    type: str
  endpoints:
    description:
      - For V(etcd_v3) only, the client URLs of the etcd that hosts the tokens. They are tried in order until
        one answers, and are returned as RV(endpoints) for the members' C(--discovery-endpoints).
      - Mutually exclusive with O(service).
    type: list
    elements: str
  size:
    description:
      - Number of members that bootstrap the cluster through the token, from 1 to 99. Every member beyond the
        first O(size) to register is refused by etcd.
      - Required with O(state=present), also when a setting may be reused.
    type: int
  url:
    description:
      - The V(etcd_v2) discovery URL to delete with O(state=absent), as returned in RV(discovery_url).

      - Only directories that hold a C(_config/size) key are deleted, a guard against wiping unrelated keys.
    type: str
  token:
    description:
      - The V(etcd_v3) token to delete with O(state=absent), as returned in RV(token).
    type: str
  resume_url:
    description:
      - With O(state=present), a token (V(public) or V(etcd_v2)) that an interrupted launch of this cluster minted;
        it is returned with RV(reused=true) when the service still has it with the size O(size) and no member
        registered yet, and a new one is minted (with a warning) otherwise. O(existing_user_data) wins over it.
      - A secret like every discovery URL; use C(no_log) on the task. (It is not a C(no_log) option, because the
        module returns it as RV(discovery_url), which Ansible would then mask.)
    type: str
  existing_user_data:
    description:
      - The user data of the cluster's running instances, raw or base64 encoded (as
        M(amazon.aws.ec2_instance_info) returns it with C(include_attributes=[userData])); empty items are skipped.
      - Recognised settings are C(Environment="ETCD_DISCOVERY=<url>"), C(Environment="ETCD_DISCOVERY_TOKEN=<token>")
        with C(Environment="ETCD_DISCOVERY_ENDPOINTS=<url>,<url>"), C(--discovery <url>) flags, and
        C(coreos.etcd2.discovery) in a CoreOS cloud-config; in YAML, JSON (Ignition) or plain text.
      - When any instance carries one, it is returned with RV(reused=true) and C(changed=false). Instances
        that carry different settings make the module fail rather than guess.
    type: list
    elements: str
notes:
  - Discovery URLs and tokens let any machine join the bootstrapping cluster. The module does not log O(url),
    O(token) or O(existing_user_data); use C(no_log) on the task if its result is printed.
  - Without O(existing_user_data) every run with O(state=present) mints a new token and reports a change.
  - A token only serves the cluster's first bootstrap; members that join later are added with C(etcdctl member add).
seealso:
  - module: coreos_ec2.cluster.discovery_token_info
    description: Read a token back, with its size and registered members, and whether it can be deleted.
  - name: etcd discovery service protocol
    description: How members use a discovery URL.
    link: https://etcd.io/docs/v3.5/dev-internal/discovery_protocol/
  - name: etcd v3 discovery
    description: The C(--discovery-token) and C(--discovery-endpoints) flags of etcd 3.6 and later.
    link: https://etcd.io/docs/v3.6/dev-internal/discovery_protocol/
"""

EXAMPLES = r"""
- name: Mint a token for three members from discovery.etcd.io
  coreos_ec2.cluster.discovery_token:
    size: 3
  register: discovery
  no_log: true

- name: Reuse the token the running instances carry, or mint one on a self-hosted etcd
  coreos_ec2.cluster.discovery_token:
    protocol: etcd_v2
    service: http://10.0.0.5:2379
    size: "{{ cluster_size }}"
    existing_user_data: "{{ running.instances | map(attribute='attributes.user_data') | list }}"
  register: discovery
  no_log: true

- name: Mint an etcd 3.6 v3 discovery token
  coreos_ec2.cluster.discovery_token:
    protocol: etcd_v3
    endpoints:
      - http://10.0.0.5:2379
      - http://10.0.0.6:2379
    size: 5
  register: discovery
  no_log: true

- name: Delete a self-hosted v2 token once the cluster has formed
  coreos_ec2.cluster.discovery_token:
    protocol: etcd_v2
    state: absent
    url: "{{ discovery.discovery_url }}"
"""

RETURN = r"""
discovery_url:
  description:
    - The URL members pass to C(--discovery) (V(public) and V(etcd_v2)).
    - Empty for V(etcd_v3), with O(state=absent), and in check mode when nothing is reused.
  returned: always
  type: str
  sample: https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de
token:
  description:
    - The token. For V(etcd_v3) what members pass to C(--discovery-token); for the other protocols the last
      path segment of RV(discovery_url).
    - Empty with O(state=absent), and in check mode when nothing is reused.
  returned: always
  type: str
  sample: 3e86b59982e49066c5d813af1c2e2579cbf573de
endpoints:
  description: For V(etcd_v3), the client URLs members pass to C(--discovery-endpoints); empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [http://10.0.0.5:2379]
size:
  description:
    - The size the new token was created with (O(state=present)), or the size the deleted token held
      (O(state=absent)).
    - V(null) when a setting was reused (its size is not read back), or when the token to delete did not exist.
  returned: always
  type: int
  sample: 3
protocol:
  description: The protocol of the token; when a setting was reused, the protocol it uses.
  returned: always
  type: str
  sample: public
reused:
  description: Whether the setting was taken from O(existing_user_data) instead of minted.
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.states import (
    TOKEN_MUTUALLY_EXCLUSIVE,
    TOKEN_REQUIRED_IF,
    run_token,
    token_argument_spec,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(argument_spec=token_argument_spec(), required_if=TOKEN_REQUIRED_IF,
                           mutually_exclusive=TOKEN_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    try:
        result, warnings = run_token(module.params, check_mode=module.check_mode)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    for warning in warnings:
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
