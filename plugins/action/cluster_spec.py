# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_spec on the controller: the same checks as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import run_cluster_spec, spec_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(spec_argument_spec)
    work = staticmethod(run_cluster_spec)
