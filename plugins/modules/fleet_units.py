#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/fleet_units.py, on the controller,
# with fleetctl run over the task's connection (CoreOS and Flatcar machines have no Python).

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_units
short_description: Deploy fleet units to a CoreOS or Flatcar cluster with fleetctl, idempotently
version_added: 0.1.0
description:
  - Brings the cluster's fleet units to the listed O(services) by running C(fleetctl) on one machine of the cluster
    through the task's connection. Run it once per cluster (C(run_once), or C(delegate_to) one machine).
  - Reads the cluster's units with one C(fleetctl list-unit-files) and compares each unit's hash, computed as
    fleet does (SHA1 of the unit re-serialised the way fleet and go-systemd write it), with the listed one. An
    unchanged unit in its desired state is left alone; a changed one is destroyed and submitted again; state
    changes use C(load), C(start), C(stop) and C(unload).
  - Applies every change with one shell script sent in one remote command, many units per fleetctl call.
  - Every service is checked before anything is listed or changed; a unit file that does not parse, an unknown
    state or a unit type fleet cannot schedule is rejected with nothing submitted.
  - Units that no service names are left alone.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.fleetctl, coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff]
attributes:
  check_mode:
    description: Lists the units and returns the plan without changing anything.
  diff_mode:
    description: Shows each changed unit's text before (from C(fleetctl cat)) and after, with its desired state.
options:
  services:
    description: The units to deploy, in any order (templates are submitted before their instances).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The unit name, for example C(logger.service), or a template such as C(web@.service).
          - Fleet schedules services, sockets, timers, paths, mounts, automounts and devices.
        type: str
        required: true
      src:
        description:
          - Path of the unit file on the controller. A relative path is looked up from the current directory, then
            as Ansible looks up files for a role or playbook. Mutually exclusive with O(services[].content).
        type: path
      content:
        description: The unit file text. Mutually exclusive with O(services[].src).
        type: str
      state:
        description:
          - V(launched) (started on a machine), V(loaded) (loaded but not started), V(inactive) (only submitted),
            or V(absent) (destroyed; for a template, with all its instances).
          - For a template with O(services[].count) or O(services[].instances), the state of its instances; the
            template itself stays submitted. A template without either can only be V(inactive) or V(absent).
        type: str
        default: launched
        choices: [launched, loaded, inactive, absent]
      count:
        description:
          - For a template, run instances C(1) to C(count) (C(web@1.service) ...). Lowering it destroys the instances
            above the new count; C(0) destroys all instances and keeps the template.
        type: int
      instances:
        description: For a template, the instance names to run (C([a, b]) gives C(web@a.service), C(web@b.service)).
        type: list
        elements: str
  block_attempts:
    description:
      - Without it, state changes pass C(--no-block) and return once fleet has recorded them. A number passes
        C(--block-attempts) to wait for the units to reach their state (C(0) waits as long as it takes).
    type: int
  batch_size:
    description: At most this many units per fleetctl command.
    type: int
    default: 50
  validate_only:
    description:
      - Only read and check O(services) on the controller (every O(services[].src) read, every unit parsed, the
        counts and instances checked) and reach no machine. The launch role does this before it creates anything.
    type: bool
    default: false
  line_continuation:
    description:
      - How a value continued with a trailing backslash is hashed. V(keep) as fleet v1.0 does (the value keeps the
        backslash and line break); V(join) as older fleet releases do.
    type: str
    default: keep
    choices: [keep, join]
seealso:
  - module: coreos_ec2.cluster.fleet_info
"""

EXAMPLES = r"""
- name: Deploy the services on the cluster
  coreos_ec2.cluster.fleet_units:
    services:
      - name: web@.service
        src: services/web@.service
        count: 3
      - name: logger.service
        src: services/logger.service
        state: launched
      - name: old.service
        state: absent
  run_once: true

- name: Show what would change, with the unit texts
  coreos_ec2.cluster.fleet_units:
    services: "{{ services }}"
  check_mode: true
  diff: true
  run_once: true
"""

RETURN = r"""
plan:
  description: The fleetctl commands the run made (in check mode, would make), by command, with unit names.
  returned: always
  type: dict
  sample:
    destroy: [web@4.service]
    submit: [web@.service, web@1.service]
    replace: []
    unload: []
    stop: []
    load: []
    start: [web@1.service]
summary:
  description: The plan in one line.
  returned: always
  type: str
  sample: "destroy web@4.service; start web@1.service"
units:
  description: One entry per listed or destroyed unit, with its hash and desired state before and after.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web@1.service
      source: web@.service
      before: {hash: 1c6fb6f3684bafb0c173d8b8b957ceff031180c1, dstate: loaded, state: loaded}
      after: {hash: 1c6fb6f3684bafb0c173d8b8b957ceff031180c1, dstate: launched}
      actions: [start]
remote_commands:
  description: How many commands the run sent to the machine (one listing, plus one script when something changes).
  returned: always
  type: int
  sample: 2
"""
