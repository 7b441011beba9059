# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_launch_template on the controller: the same calls as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._launch_template import run_launch_template, template_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(template_argument_spec)
    work = staticmethod(run_launch_template)
    passes_check_mode = True
    uses_ec2 = True
