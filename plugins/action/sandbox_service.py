# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sandbox_service on the controller: the sandbox is the controller's own, and every playbook run on the sandbox
checks its daemons, so the check costs no module process."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._sandbox import run_service, service_argument_spec
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(service_argument_spec)
    work = staticmethod(run_service)
    passes_check_mode = True
