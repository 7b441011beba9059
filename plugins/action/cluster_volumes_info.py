# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_volumes_info on the controller: the same DescribeVolumes as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._machine_data import run_volumes_info, volumes_info_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(volumes_info_argument_spec)
    work = staticmethod(run_volumes_info)
    uses_ec2 = True
