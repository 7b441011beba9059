# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""discovery_token_info on the controller: the same reads as the module, without a module process (scale, inspect
and cleanup read the cluster's token)."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.states import (
    TOKEN_INFO_MUTUALLY_EXCLUSIVE,
    run_token_info,
    token_info_argument_spec,
)
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(token_info_argument_spec)
    work = staticmethod(run_token_info)
    spec_options = {"mutually_exclusive": TOKEN_INFO_MUTUALLY_EXCLUSIVE}
