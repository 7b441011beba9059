# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_info: fleet's machines, unit files and units from one remote command."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import (
    parse_list_machines,
    parse_list_unit_files,
    parse_list_units,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.spec import fleet_info_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._fleet_action import FleetActionBase


class ActionModule(FleetActionBase):

    def _work(self):
        dummy, args = self.validate_argument_spec(argument_spec=fleet_info_argument_spec())
        options = self._fleetctl(args)
        try:
            sections = self._run_sections(self._listing_parts(options, ["machines", "unit_files", "units"]))
            return {
                "changed": False,
                "machines": parse_list_machines(self._listing(sections, "machines", "fleetctl list-machines")),
                "unit_files": parse_list_unit_files(self._listing(sections, "unit_files", "fleetctl list-unit-files")),
                "units": parse_list_units(self._listing(sections, "units", "fleetctl list-units")),
            }
        except ClusterError as err:
            raise AnsibleActionFail(err.msg) from None
