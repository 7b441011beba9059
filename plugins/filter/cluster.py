# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the roles use to turn EC2 answers into the collection's cluster description."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_rows


class FilterModule:
    def filters(self):
        return {"instance_rows": instance_rows}
