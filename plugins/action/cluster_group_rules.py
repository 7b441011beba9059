# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_group_rules on the controller: the same calls as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._group_rules import group_rules_argument_spec, run_group_rules
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(group_rules_argument_spec)
    work = staticmethod(run_group_rules)
    passes_check_mode = True
    uses_ec2 = True
