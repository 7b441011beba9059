# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_instance_state on the controller: the same batched calls as the module, without a module process
(start, stop, terminate, cleanup, scale and a launch's rollback run it)."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instance_state import (
    INSTANCE_STATE_OPTIONS,
    instance_state_argument_spec,
    run_instance_state,
)
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(instance_state_argument_spec)
    work = staticmethod(run_instance_state)
    passes_check_mode = True
    uses_ec2 = True
    spec_options = INSTANCE_STATE_OPTIONS
