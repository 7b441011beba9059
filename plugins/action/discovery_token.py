# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""discovery_token on the controller: the same HTTP calls as the module, without a module process.

The discovery service is reached from where the playbook runs, as the module (run on localhost) always did.
"""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.states import (
    TOKEN_MUTUALLY_EXCLUSIVE,
    TOKEN_REQUIRED_IF,
    run_token,
    token_argument_spec,
)
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    argument_spec = staticmethod(token_argument_spec)
    work = staticmethod(run_token)
    passes_check_mode = True
    spec_options = {"required_if": TOKEN_REQUIRED_IF, "mutually_exclusive": TOKEN_MUTUALLY_EXCLUSIVE}
