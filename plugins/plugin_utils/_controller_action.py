# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's pure work on the controller: no module process, no Python on the target.

A module whose work is only logic (check inputs, render a document) costs a process per run, about half a second
with its imports. Its action plugin subclasses ControllerAction, names the argument spec and the run function the
module itself uses (both in module_utils), and gets the same checks, results and warnings without the process.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


class ControllerAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    argument_spec: Callable[[], Dict[str, Any]]
    work: Callable[[Dict[str, Any]], Tuple[Dict[str, Any], List[str]]]
    spec_options: Dict[str, Any] = {}
    # Whether work() takes check_mode (for actions that change something).
    passes_check_mode = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(argument_spec=type(self).argument_spec(), **self.spec_options)
        del validation
        try:
            if self.passes_check_mode:
                answer, warnings = type(self).work(params, check_mode=bool(self._play_context.check_mode))
            else:
                answer, warnings = type(self).work(params)
        except ClusterError as exc:
            result.update(failed=True, msg=exc.msg)
            return result
        diff = answer.pop("diff", None)
        result.update(answer)
        if diff is not None and self._task.diff:
            result["diff"] = diff
        if warnings:
            result["warnings"] = list(result.get("warnings") or []) + list(warnings)
        return result
