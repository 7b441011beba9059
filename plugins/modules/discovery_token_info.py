#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: discovery_token_info
short_description: Read back an etcd discovery token, its size and its registered members
version_added: 0.1.0
description:
  - Reads the discovery token given by O(url) (V(public), V(etcd_v2)) or O(token) (V(etcd_v3)) and returns whether
    it exists, the size it was created with, the members registered under it, and whether
    M(coreos_ec2.cluster.discovery_token) can delete it.
  - The protocol and the service are inferred from O(url) when O(protocol) is not given, so that playbooks need
    not take discovery URLs apart.
  - Never changes anything, and does not fail because the token cannot be read (service down, not an etcd, ...);
    it then returns RV(msg), with RV(exists) and RV(size) V(null). Bad options do fail.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.discovery, coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
options:
  url:
    description:
      - The V(public) or V(etcd_v2) discovery URL to read, as M(coreos_ec2.cluster.discovery_token) returned it in
        C(discovery_url) or as P(coreos_ec2.cluster.discovery_of_user_data#filter) found it in a running machine's
        user data.
    type: str
  token:
    description:
      - The V(etcd_v3) token to read, as M(coreos_ec2.cluster.discovery_token) returned it in C(token).
    type: str
  protocol:
    description:
      - The protocol of the token, as for M(coreos_ec2.cluster.discovery_token).
      - When not set, inferred - V(etcd_v2) when O(url) contains C(/v2/keys/), V(public) for any other O(url),
        V(etcd_v3) when only O(token) is given.
    type: str
    choices: [public, etcd_v2, etcd_v3]
  service:
    description:
      - For V(etcd_v3), a single client URL of the etcd that keeps the token, instead of O(endpoints).
      - Not used with a V(public) or V(etcd_v2) O(url), which names its service itself (returned as RV(service)).
    type: str
  endpoints:
    description:
      - For V(etcd_v3) only, the client URLs of the etcd that keeps the token, tried in order until one answers.
      - Mutually exclusive with O(service).
    type: list
    elements: str
notes:
  - Discovery URLs and tokens let any machine join the bootstrapping cluster. The module does not log O(url) or
    O(token); use C(no_log) on the task if its result is printed.
  - Ansible hides the values of O(url) and O(token) wherever they appear in a result, so RV(discovery_url) and,
    for V(etcd_v3), RV(token) read C(VALUE_SPECIFIED_IN_NO_LOG_PARAMETER) when they repeat the value given. The
    task already has that value; RV(service) and, for V(public) and V(etcd_v2), RV(token) are returned in clear.
seealso:
  - module: coreos_ec2.cluster.discovery_token
    description: Create, reuse or delete a discovery token.
  - name: etcd discovery service protocol
    description: The registry layout read here.
    link: https://etcd.io/docs/v3.5/dev-internal/discovery_protocol/
"""

EXAMPLES = r"""
- name: Read the token a running cluster uses (protocol and service inferred from the URL)
  coreos_ec2.cluster.discovery_token_info:
    url: "{{ (user_data | coreos_ec2.cluster.discovery_of_user_data).url }}"
  register: token_info
  no_log: true

- name: Delete it when the protocol can, unless it is known to be gone (unreadable counts as still there)
  coreos_ec2.cluster.discovery_token:
    protocol: "{{ token_info.protocol }}"
    state: absent
    url: "{{ (user_data | coreos_ec2.cluster.discovery_of_user_data).url }}"
  no_log: true
  when: token_info.deletable and token_info.exists is not false

- name: Read an etcd 3.6 v3 discovery token
  coreos_ec2.cluster.discovery_token_info:
    token: "{{ discovery.token }}"
    endpoints: [http://10.0.0.5:2379, http://10.0.0.6:2379]
  register: token_info
"""

RETURN = r"""
protocol:
  description: The protocol of the token, as given in O(protocol) or inferred from O(url) or O(token).
  returned: always
  type: str
  sample: etcd_v2
discovery_url:
  description:
    - The O(url) read, without trailing slashes (see the notes on hidden values); empty for V(etcd_v3).
  returned: always
  type: str
  sample: http://10.0.0.5:2379/v2/keys/_etcd/registry/0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e
service:
  description:
    - Where the token lives. For V(etcd_v2) the etcd client URL, the part of O(url) before C(/v2/keys); for
      V(public) the discovery service, the part of O(url) before the token. The value to pass as C(service) to
      M(coreos_ec2.cluster.discovery_token).
    - Empty for V(etcd_v3), whose service is RV(endpoints).
  returned: always
  type: str
  sample: http://10.0.0.5:2379
token:
  description: The token, for V(public) and V(etcd_v2) the last path segment of O(url).
  returned: always
  type: str
  sample: 0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e
endpoints:
  description: For V(etcd_v3), the client URLs read from; empty otherwise.
  returned: always
  type: list
  elements: str
  sample: []
exists:
  description:
    - Whether the token exists. For V(public) and V(etcd_v2), whether its directory does; for V(etcd_v3),
      whether any key is stored under it.
    - V(null) when the token could not be read; RV(msg) then says why.
  returned: always
  type: bool
  sample: true
size:
  description:
    - The size the token was created with, read from its C(_config/size) key.
    - V(null) when the token does not exist, holds no C(_config/size) key, or could not be read.
  returned: always
  type: int
  sample: 3
members:
  description:
    - The etcd members registered under the token, in registration order, at most RV(size) of them (etcd counts
      only the first RV(size) registrations as members; machines that register later become proxies).
    - Registrations that are not C(name=peer URL) entries under a member id key are left out.
    - Empty when nobody registered yet, or when the token does not exist or could not be read.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The member id, as etcd prints it (hexadecimal, lower case).
      type: str
      sample: 8e9e05c52164694d
    name:
      description: The member name (etcd C(--name)).
      type: str
      sample: ip-10-0-0-11
    peer_urls:
      description: The peer URLs the member advertised.
      type: list
      elements: str
      sample: [http://10.0.0.11:2380]
    ip:
      description: The first peer URL host that is an IP address; empty when the members advertise host names.
      type: str
      sample: 10.0.0.11
  sample:
    - id: 8e9e05c52164694d
      name: ip-10-0-0-11
      peer_urls: [http://10.0.0.11:2380]
      ip: 10.0.0.11
deletable:
  description:
    - Whether M(coreos_ec2.cluster.discovery_token) with C(state=absent) can delete tokens of RV(protocol). V(true)
      for V(etcd_v2) and V(etcd_v3), V(false) for V(public), whose service has no delete (its tokens expire).
    - It does not say whether this token exists (RV(exists)). Deleting also refuses a V(etcd_v2) directory that
      holds no C(_config/size) key (RV(exists=true) with RV(size=null)).
  returned: always
  type: bool
  sample: true
msg:
  description: Why the token could not be read, naming the service, never the token. The module does not fail.
  returned: when the token could not be read
  type: str
  sample: "Failed to read discovery token at http://10.0.0.5:2379: connection failed: [Errno 111] Connection refused"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.states import (
    TOKEN_INFO_MUTUALLY_EXCLUSIVE,
    run_token_info,
    token_info_argument_spec,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(argument_spec=token_info_argument_spec(), mutually_exclusive=TOKEN_INFO_MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    try:
        result, dummy = run_token_info(module.params)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
