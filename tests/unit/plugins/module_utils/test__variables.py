# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typos in extra variables are caught before anything happens."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _variables as v

KNOWN = ["cluster_name", "cluster_size", "instance_type", "key_name", "confirm"]


def test_close_names_are_errors_others_warnings():
    errors, warnings = v.check_variables(["cluster_sise", "cluster_name", "insance_type", "my_own_thing"], KNOWN)
    assert errors == ["unknown variable cluster_sise: did you mean cluster_size?",
                      "unknown variable insance_type: did you mean instance_type?"]
    assert warnings == ["variable my_own_thing is not read by this playbook (its roles do not document it); ignored"]


def test_ansible_names_are_not_judged():
    assert v.check_variables(["ansible_python_interpreter", "ansible_user"], KNOWN) == ([], [])


def test_argument_spec_options():
    specs = {"argument_specs": {"main": {"options": {"a": {}, "b": {}}}, "other": {"options": {"c": {}}}, "empty": None}}
    assert v.argument_spec_options(specs) == {"a", "b", "c"}
    assert v.argument_spec_options(specs, ["main"]) == {"a", "b"}
