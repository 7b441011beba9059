# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_lock on the controller: the same lock as the module, without a module process (a launch takes and
releases it, so it runs twice per launch)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import lock_argument_spec, run_lock
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._ec2_controller import connection_argument_spec, ec2_client


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec={**lock_argument_spec(), **connection_argument_spec()},
                                                  required_if=[("state", "absent", ["run_id"])])
        try:
            answer, warnings = run_lock(ec2_client(args), args, check_mode=bool(self._play_context.check_mode))
        except ClusterError as exc:
            result.update(failed=True, msg=exc.msg)
            return result
        diff = answer.pop("diff", None)
        result.update(answer)
        if diff is not None and self._task.diff:
            result["diff"] = diff
        if warnings:
            result["warnings"] = warnings
        return result
