# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""discovery_sweep on the controller: the same HTTP calls as the module, without a module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.sweep import run_sweep, sweep_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(sweep_argument_spec)
    work = staticmethod(run_sweep)
    passes_check_mode = True
