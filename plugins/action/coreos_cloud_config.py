# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""coreos_cloud_config on the controller: the same rendering and checks as the module, without a module process.

src is read on the controller, which is where the launch role's playbooks run the module anyway (localhost).
"""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.module import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    REQUIRED_TOGETHER,
    argument_spec,
    run,
)
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(argument_spec)
    work = staticmethod(run)
    spec_options = {"mutually_exclusive": MUTUALLY_EXCLUSIVE, "required_one_of": REQUIRED_ONE_OF,
                    "required_together": REQUIRED_TOGETHER}
