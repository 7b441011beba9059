# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_units: plan on the controller, run fleetctl on the machine (one listing, then one script)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import (
    PATH_PREFIX,
    cat_parts,
    cat_texts,
    parse_list_unit_files,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.plan import (
    describe_plan,
    plan_units,
    unit_diff,
    validate_services,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.script import render_script, script_failure
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.spec import fleet_units_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._fleet_action import FleetActionBase


class ActionModule(FleetActionBase):

    def _read_src(self, index: int, service: dict) -> str:
        src = service["src"]
        path = src if os.path.isabs(src) or os.path.exists(src) else None
        if path is None:
            try:
                path = self._find_needle("files", src)
            except AnsibleError:
                raise AnsibleActionFail(
                    f"services[{index}] ({service['name']}): src {src} not found (looked in {os.getcwd()} and the "
                    "role's and playbook's files)") from None
        try:
            with open(path, "rb") as handle:
                return to_text(handle.read(), errors="surrogate_or_strict")
        except (OSError, UnicodeError) as exc:
            raise AnsibleActionFail(f"services[{index}] ({service['name']}): cannot read src {path}: {exc}") from None

    def _services(self, services: list) -> list:
        """The services with each src read into content; src and content are exclusive (argument spec)."""
        resolved = []
        for index, service in enumerate(services):
            entry = {key: value for key, value in service.items() if value is not None and key != "src"}
            if service.get("src") is not None:
                entry["content"] = self._read_src(index, service)
            resolved.append(entry)
        return resolved

    def _work(self):
        result = {}
        dummy, args = self.validate_argument_spec(argument_spec=fleet_units_argument_spec())
        options = self._fleetctl(args)
        services = self._services(args["services"])
        try:
            # Everything the user gave is checked before the machine is asked anything.
            validate_services(services)
            if args["batch_size"] < 1:
                raise ClusterError(f"batch_size must be at least 1, got {args['batch_size']}")
            if args["validate_only"]:
                plan = plan_units(services, [], args["line_continuation"])
                return dict(result, changed=False, summary="checked: " + describe_plan(plan), units=plan["units"],
                            remote_commands=0)
            listing = self._listing_parts(options, ["unit_files"])
            texts_wanted = sorted({s["name"] for s in services if s.get("state") != "absent"})
            sections = self._run_sections(listing + (cat_parts(texts_wanted, **options) if self._task.diff else []))
            rows = parse_list_unit_files(self._listing(sections, "unit_files", "fleetctl list-unit-files"))
            plan = plan_units(services, rows, args["line_continuation"])
            script = render_script(plan, batch_size=args["batch_size"], block_attempts=args["block_attempts"], **options)
        except ClusterError as err:
            raise AnsibleActionFail(err.msg) from None

        result.update(
            changed=plan["changed"],
            plan={key: plan[key] for key in ("destroy", "submit", "replace", "unload", "stop", "load", "start")},
            summary=describe_plan(plan),
            units=plan["units"],
            remote_commands=1,
        )
        if self._task.diff and plan["changed"]:
            result["diff"] = unit_diff(plan, cat_texts(sections))
        if self._play_context.check_mode or not plan["changed"]:
            return result

        res = self._run_script(PATH_PREFIX + "\n" + script)
        result["remote_commands"] = 2
        if res["rc"] != 0:
            failed = script_failure(res.get("stderr", ""))
            where = (f"step {failed['step']} of {failed['steps']} ({failed['what']})" if failed
                     else f"the deploy script (exit code {res['rc']})")
            done = (f"; the {failed['step'] - 1} steps before it were applied" if failed and failed["step"] > 1
                    else "; nothing was changed" if failed else "")
            result.update(failed=True, rc=res["rc"], stdout=res.get("stdout", ""), stderr=res.get("stderr", ""),
                          msg=f"fleet_units failed on {self._host()} at {where}{done}: "
                              + " ".join(to_text(res.get("stderr", "")).split())[-800:])
        return result
