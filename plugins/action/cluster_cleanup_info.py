# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_cleanup_info on the controller: cleanup's reads without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import cleanup_info_argument_spec, run_cleanup_info
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(cleanup_info_argument_spec)
    work = staticmethod(run_cleanup_info)
    uses_ec2 = True
