# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_lookup on the controller: the same reads as the module, without a module process (every launch runs it)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lookup import lookup_argument_spec, lookup_cluster
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._ec2_controller import connection_argument_spec, ec2_client


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec={**lookup_argument_spec(), **connection_argument_spec()})
        try:
            client = ec2_client(args)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            result.update(changed=False, problems=[], error=f"Failed to connect to EC2: {exc}", image={},
                          security_group={}, instances=[], user_data=[], pending_discovery_url="", subnets=[],
                          placement=[], notes=[])
            return result
        result.update(lookup_cluster(client, args, args["region"]))
        return result
