# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""check_variables: compare the play's extra variables with the roles' argument specs, on the controller."""

from __future__ import annotations

import os

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._variables import argument_spec_options, check_variables

# libyaml's loader where PyYAML has it: the pure-Python one takes about 0.1 s for the roles' argument specs.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("roles", "extra_known"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=dict(
            roles=dict(type="list", elements="str", required=True),
            extra_known=dict(type="list", elements="str", default=[]),
        ))
        known = set(args["extra_known"])
        for role in args["roles"]:
            path = os.path.join(_COLLECTION, "roles", role, "meta", "argument_specs.yml")
            try:
                with open(path, encoding="utf-8") as handle:
                    known |= argument_spec_options(yaml.load(handle, Loader=_SafeLoader) or {})
            except OSError as exc:
                raise AnsibleActionFail(f"roles: cannot read the argument specs of role {role}: {exc}") from None
        given = list(load_extra_vars(self._loader))
        errors, warnings = check_variables(given, known)
        for warning in warnings:
            self._display.warning(warning)
        result.update(changed=False, unknown=[m.split()[2].rstrip(":") for m in errors + warnings])
        if errors:
            result.update(failed=True, msg="; ".join(errors) + " (nothing was done)")
        return result
