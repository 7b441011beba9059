# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_lock on the controller: the same lock as the module, without a module process (a launch takes and
releases it, so it runs twice per launch)."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import lock_argument_spec, run_lock
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(lock_argument_spec)
    work = staticmethod(run_lock)
    passes_check_mode = True
    uses_ec2 = True
    spec_options = {"required_if": [("state", "absent", ["run_id"])]}
