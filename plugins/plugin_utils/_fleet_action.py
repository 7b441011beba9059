# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the fleet action plugins share: running several fleetctl commands on the machine in one round trip."""

from __future__ import annotations

import secrets
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import (
    list_machines_command,
    list_unit_files_command,
    list_units_command,
    listing_error,
    parse_sections,
    sections_script,
)


class FleetActionBase(ActionBase):
    # Nothing is copied to the machine and no Python runs there: every command is plain sh.
    TRANSFERS_FILES = False
    _supports_check_mode = True

    _host_name = "the machine"

    def _host(self) -> str:
        return self._host_name

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        # A delegated task runs on the delegate; inventory_hostname is still the play's host.
        self._host_name = str(self._task.delegate_to or (task_vars or {}).get("inventory_hostname", self._host_name))
        try:
            result.update(self._work())
        except AnsibleActionFail as failure:
            # Returned, not raised: a failed result is what `until`, `failed_when` and `ignore_errors` act on.
            result.update(failure.result)
        return result

    def _work(self) -> Dict[str, Any]:
        """The action's result; raise AnsibleActionFail to fail."""
        raise NotImplementedError

    def _fleetctl(self, args: Mapping[str, Any]) -> Dict[str, Any]:
        return {"fleetctl": args["fleetctl"], "flags": args.get("fleetctl_flags"), "env": args.get("fleetctl_env")}

    def _run_sections(self, parts: Sequence[Tuple[str, str]]) -> Dict[str, Dict[str, Any]]:
        """Run the (key, command) parts in one remote command; each section's output and exit code."""
        nonce = secrets.token_hex(8)
        res = self._low_level_execute_command(sections_script(parts, nonce), sudoable=False)
        return parse_sections(res.get("stdout", ""), nonce)

    def _run_script(self, script: str) -> Dict[str, Any]:
        """Run a script given on stdin (no size limit of a command line); rc, stdout, stderr."""
        return self._low_level_execute_command("sh -s", sudoable=False, in_data=to_bytes(script))

    def _listing(self, sections: Mapping[str, Mapping[str, Any]], key: str, what: str) -> str:
        problem = listing_error(sections.get(key), what, self._host())
        if problem:
            raise AnsibleActionFail(problem)
        return sections[key]["output"]

    @staticmethod
    def _listing_parts(options: Mapping[str, Any], names: List[str]) -> List[Tuple[str, str]]:
        commands = {
            "machines": list_machines_command,
            "unit_files": list_unit_files_command,
            "units": list_units_command,
        }
        return [(name, commands[name](**options)) for name in names]
