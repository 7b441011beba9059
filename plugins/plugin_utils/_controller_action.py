# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's pure work on the controller: no module process, no Python on the target.

A module whose work is only logic (check inputs, render a document) costs a process per run, about half a second
with its imports. Its action plugin subclasses ControllerAction, names the argument spec and the run function the
module itself uses (both in module_utils), and gets the same checks, results and warnings without the process.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Tuple

from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def _preload_filters() -> None:
    """Import the collection's filter plugins in Ansible's main process, which imports this module when it loads
    the first controller action of a play (cluster_spec in launch and ops, before any filter is used).

    Every task runs in a worker forked from the main process. A worker that templates one of our filters imports
    its plugin, with the module_utils it needs, compiling their source (Ansible's collection loader keeps no
    bytecode): 0.05 to 0.1 s of every task that uses a filter. A plugin module already in sys.modules is reused
    (PluginLoader._load_module_source), so imported here once it costs the workers nothing.
    """
    for name in ("cluster", "ops"):
        try:
            importlib.import_module(f"ansible_collections.coreos_ec2.cluster.plugins.filter.{name}")
        except Exception:  # pylint: disable=broad-exception-caught
            pass  # the task that uses the filter loads it again and reports what is wrong


_preload_filters()


def _ec2_controller():
    # Imported only by actions that use EC2: botocore and the EC2 model cost about 0.4 s (see _ec2_controller).
    from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils import _ec2_controller as module
    return module


class ControllerAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    argument_spec: Callable[[], Dict[str, Any]]
    work: Callable[[Dict[str, Any]], Tuple[Dict[str, Any], List[str]]]
    spec_options: Dict[str, Any] = {}
    # Whether work() takes check_mode (for actions that change something).
    passes_check_mode = False
    # Whether work() takes an EC2 client first (made from the group/aws connection options, see _ec2_controller).
    uses_ec2 = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The class is loaded in Ansible's main process, before the task's worker is forked from it: the import
        # there is inherited by every later worker.
        if cls.uses_ec2:
            _ec2_controller()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        spec = type(self).argument_spec()
        if self.uses_ec2:
            spec = {**spec, **_ec2_controller().connection_argument_spec()}
        validation, params = self.validate_argument_spec(argument_spec=spec, **self.spec_options)
        del validation
        args = (_ec2_controller().ec2_client(params), params) if self.uses_ec2 else (params,)
        kwargs = {"check_mode": bool(self._play_context.check_mode)} if self.passes_check_mode else {}
        try:
            answer, warnings = type(self).work(*args, **kwargs)
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
