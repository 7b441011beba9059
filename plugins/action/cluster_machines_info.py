# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_machines_info: a cluster's machines with one DescribeInstances, read on the controller."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._ec2_controller import (
    connection_argument_spec,
    describe_instances,
    ec2_client,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec=dict(
            filters=dict(type="dict", required=True),
            **connection_argument_spec(),
        ))
        raw = describe_instances(ec2_client(args), args["filters"], "the cluster's machines")
        result.update(changed=False, instances=raw, rows=instance_rows(raw))
        return result
