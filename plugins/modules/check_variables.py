#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/check_variables.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: check_variables
short_description: Refuse extra variables that look like a typo of a role's option
version_added: 0.3.0
description:
  - Compares the play's extra variables (C(-e)) with the options documented in the argument specs of O(roles).
  - A variable that is not an option but close to one (C(cluster_sise)) fails with "did you mean cluster_size?";
    any other unknown variable gets a warning, since it may be meant for another part of the play.
  - Runs on the controller; reads nothing from the target.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
options:
  roles:
    description: Roles of this collection whose options the play takes.
    type: list
    elements: str
    required: true
  extra_known:
    description: Further variable names the play reads.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Refuse typos before anything happens
  coreos_ec2.cluster.check_variables:
    roles: [launch, deploy]
    extra_known: [services]
"""

RETURN = r"""
unknown:
  description: The extra variables that no role reads.
  returned: always
  type: list
  elements: str
"""
