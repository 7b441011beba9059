#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/fleet_info.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_info
short_description: List a fleet cluster's machines and units with fleetctl
version_added: 0.1.0
description:
  - Runs C(fleetctl list-machines), C(list-unit-files) and C(list-units) on one machine of the cluster in one remote
    command, through the task's connection, and returns them parsed.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.fleetctl, coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
seealso:
  - module: coreos_ec2.cluster.fleet_units
"""

EXAMPLES = r"""
- name: Read fleet's view of the cluster
  coreos_ec2.cluster.fleet_info:
  register: fleet
  run_once: true
"""

RETURN = r"""
machines:
  description: The machines fleet knows, with their public IP and metadata.
  returned: always
  type: list
  elements: dict
  sample: [{machine: 3f1a0a9b6cbd4f2d8a1e4b0c7d9e2f10, ip: 10.0.0.5, metadata: {region: us-east-1}}]
unit_files:
  description: Every unit in the cluster with its hash, desired state, current state and target machine.
  returned: always
  type: list
  elements: dict
  sample:
    - {unit: web@1.service, hash: 1c6fb6f3684bafb0c173d8b8b957ceff031180c1, dstate: launched, state: launched,
       target: 3f1a0a9b6cbd4f2d8a1e4b0c7d9e2f10, target_ip: 10.0.0.5, global: false}
units:
  description: Every unit loaded on a machine, with systemd's active and sub state there.
  returned: always
  type: list
  elements: dict
  sample: [{unit: web@1.service, machine: 3f1a0a9b6cbd4f2d8a1e4b0c7d9e2f10, ip: 10.0.0.5, active: active, sub: running}]
"""
