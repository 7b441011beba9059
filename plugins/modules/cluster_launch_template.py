#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_launch_template
short_description: Keep a cluster's launch template, which starts its spot machines
version_added: 0.3.0
description:
  - M(amazon.aws.ec2_instance) has no market option, but starts machines from a launch template. This module keeps
    the cluster's template, whose only data are the market options, so that C(ec2_instance) with
    C(launch_template) starts spot machines (one-time requests that EC2 terminates when it needs the capacity back).
  - With O(state=present), creates the template (tagged with O(tags)), or, when its default version has other market
    options (another O(spot_max_price)), adds a version with the wanted ones and makes it the default. Machines
    already running keep theirs.
  - With O(state=absent), deletes it (cleanup).
  - A template of that name without the tag C(coreos-ec2-cluster=<cluster_name>) is refused, never used or deleted.
  - Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
attributes:
  check_mode:
    description: Reads the template; creates, changes and deletes nothing.
  diff_mode:
    description: Shows the market options before and after.
options:
  cluster_name:
    description: The cluster; the template must carry the tag C(coreos-ec2-cluster=<cluster_name>).
    type: str
    required: true
  name:
    description: The template's name (the launch role uses the cluster's security group name, C(coreos-ec2-<cluster>)).
    type: str
    required: true
  market:
    description: The market of the machines the template starts (V(on-demand) leaves the market options out).
    type: str
    default: spot
    choices: [on-demand, spot]
  spot_max_price:
    description: With O(market=spot), the highest price in USD per machine-hour, for example V(0.05); empty caps at the on-demand price.
    type: str
    default: ""
  tags:
    description: The tags of a template this module creates (the cluster's tags, the cluster tag among them).
    type: dict
    default: {}
  state:
    description: V(present) creates or updates the template, V(absent) deletes it.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Keep the launch template of cluster p-1's spot machines
  coreos_ec2.cluster.cluster_launch_template:
    cluster_name: p-1
    name: coreos-ec2-p-1
    spot_max_price: "0.05"
    tags: {coreos-ec2-cluster: p-1}
  register: template

- name: Start spot machines from it
  amazon.aws.ec2_instance:
    name: p-1
    exact_count: 3
    filters: {"tag:coreos-ec2-cluster": p-1, instance-state-name: [pending, running]}
    launch_template: {name: "{{ template.launch_template.name }}"}
    instance_type: c5.large
    image_id: ami-0123456789abcdef0
    tags: {coreos-ec2-cluster: p-1}

- name: Delete it (cleanup)
  coreos_ec2.cluster.cluster_launch_template:
    cluster_name: p-1
    name: coreos-ec2-p-1
    state: absent
"""

RETURN = r"""
launch_template:
  description: The template (id, name, and the default version); empty when there is none (O(state=absent)).
  returned: always
  type: dict
  sample: {id: lt-0123456789abcdef0, name: coreos-ec2-p-1, version: "1"}
created:
  description: Whether this run created the template (a rollback deletes only such a template).
  returned: with O(state=present)
  type: bool
"""

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._launch_template import run_launch_template, template_argument_spec


def main() -> None:
    run_aws_module(template_argument_spec(), run_launch_template)


if __name__ == "__main__":
    main()
