# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument specs of the fleet actions, defined once (docs: plugins/modules/fleet_*.py and the fleetctl
doc fragment)."""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import LINE_CONTINUATIONS
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.plan import STATES


def fleetctl_argument_spec() -> Dict[str, Any]:
    return {
        "fleetctl": {"type": "str", "default": "fleetctl"},
        "fleetctl_flags": {"type": "dict"},
        "fleetctl_env": {"type": "dict"},
    }


def fleet_units_argument_spec() -> Dict[str, Any]:
    spec = fleetctl_argument_spec()
    spec.update({
        "services": {
            "type": "list", "elements": "dict", "required": True,
            "options": {
                "name": {"type": "str", "required": True},
                "src": {"type": "path"},
                "content": {"type": "str"},
                "state": {"type": "str", "default": "launched", "choices": list(STATES)},
                "count": {"type": "int"},
                "instances": {"type": "list", "elements": "str"},
            },
            "mutually_exclusive": [["src", "content"], ["count", "instances"]],
        },
        "block_attempts": {"type": "int"},
        "batch_size": {"type": "int", "default": 50},
        "line_continuation": {"type": "str", "default": "keep", "choices": list(LINE_CONTINUATIONS)},
        "validate_only": {"type": "bool", "default": False},
    })
    return spec


def fleet_info_argument_spec() -> Dict[str, Any]:
    return fleetctl_argument_spec()
