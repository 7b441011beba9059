# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the roles use to turn EC2 answers into the collection's cluster description."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import (
    add_volume_sizes, endpoints, instance_rows, probe_plan, probe_results, sandbox_probe_plan,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._reports import (
    deploy_message, deploy_result, launch_summary, rollback_message,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.user_data import find_discovery_in_user_data


def discovery_of_user_data(user_data: object) -> dict:
    """The discovery setting in one machine's user data (raw or base64), or {} when it has none."""
    return find_discovery_in_user_data(user_data) or {}


class FilterModule:
    def filters(self):
        return {
            "instance_rows": instance_rows,
            "discovery_of_user_data": discovery_of_user_data,
            "add_volume_sizes": add_volume_sizes,
            "probe_results": probe_results,
            "sandbox_probe_plan": sandbox_probe_plan,
            "probe_plan": probe_plan,
            "cluster_endpoints": endpoints,
            "launch_summary": launch_summary,
            "launch_rollback_message": rollback_message,
            "deploy_result": deploy_result,
            "deploy_message": deploy_message,
        }
