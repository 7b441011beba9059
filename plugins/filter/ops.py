# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the ops role uses to inspect and scale a running cluster (logic in module_utils/_ops.py)."""

from __future__ import annotations

import functools
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _ops
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def _as_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report the helpers' ClusterError as a filter error: its message is meant for the user as it is."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClusterError as exc:
            raise AnsibleFilterError(exc.msg) from exc

    return wrapper


class FilterModule:
    def filters(self):
        return {
            "ops_inspect_table": _as_filter(_ops.inspect_table),
            "ops_scale_plan": _as_filter(_ops.scale_plan),
            "ops_scale_placement": _as_filter(_ops.scale_placement),
            "ops_state_counts": _as_filter(_ops.state_counts),
            "ops_discovery_members": _as_filter(_ops.discovery_members),
            "ops_mask_url": _as_filter(_ops.mask_url),
            "ops_foreign_instances": _as_filter(_ops.foreign_instances),
            "ops_cleanup_plan": _as_filter(_ops.cleanup_plan),
            "ops_scale_summary": _as_filter(_ops.scale_summary),
            "ops_change_message": _as_filter(_ops.change_message),
            "ops_cleanup_message": _as_filter(_ops.cleanup_message),
            "ops_fleet_view": _as_filter(_ops.fleet_view),
        }
