# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_group_delete on the controller: the same calls as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import group_delete_argument_spec, run_group_delete
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(group_delete_argument_spec)
    work = staticmethod(run_group_delete)
    passes_check_mode = True
    uses_ec2 = True
