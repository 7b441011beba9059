# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit and write_files entries: systemd unit names, commands, flags, drop-ins, duplicates."""

from __future__ import annotations

import re

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    UNIT_COMMANDS,
    unit_name_problem,
    validate_cloud_config,
    validate_unit,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


# ------------------------------------------------------------------------------------------
# Unit names
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    ["etcd-member.service", "media-ebs.mount", "foo@.service", "foo@bar.service", "foo@bar@baz.service",
     "media-my\\x2debs.mount", "a:b_c.d.timer", "00-eth0.network", "sockets.target", "x.socket"],
)
def test_valid_unit_names(name):
    assert unit_name_problem(name) is None


@pytest.mark.parametrize(
    "name, problem",
    [
        ("etcd", "NAME.TYPE"),
        ("etcd.servce", "not a unit type"),
        ("etcd member.service", "NAME.TYPE"),
        ("@foo.service", "NAME.TYPE"),
        ("foo/bar.service", "NAME.TYPE"),
        (".service", "NAME.TYPE"),
        ("", "non-empty"),
        (None, "non-empty"),
        ("a" * 250 + ".service", "longer than 255"),
    ],
)
def test_invalid_unit_names(name, problem):
    assert problem in unit_name_problem(name)


# ------------------------------------------------------------------------------------------
# Unit entries and the merged result
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "unit, message",
    [
        ({"name": "x.service", "command": "launch"}, "command 'launch' is not one of"),
        ({"name": "x.service", "enable": "yes"}, "enable must be true or false"),
        ({"name": "x.service", "mask": 1}, "mask must be true or false"),
        ({"name": "x.service", "content": ["a"]}, "content must be a string"),
        ({"name": "x.service", "drop_ins": [{"name": "10-a", "content": "x"}]}, "ending in .conf"),
        ({"name": "x.service", "drop-ins": [{"name": "10-a.conf"}]}, "needs its content"),
        ({"name": "x.srv"}, "not a valid systemd unit name"),
        ({"command": "start"}, "not a valid systemd unit name"),
    ],
)
def test_unit_entry_validation(unit, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        validate_unit(unit, "units[0]")


@pytest.mark.parametrize("command", list(UNIT_COMMANDS))
def test_unit_commands_accepted(command):
    validate_unit({"name": "x.service", "command": command, "enable": True}, "units[0]")


def test_duplicate_names_after_merge_are_rejected():
    cfg = {"coreos": {"units": [{"name": "a.service"}, {"name": "a.service"}]}}
    with pytest.raises(ValidationError, match="appears twice"):
        validate_cloud_config(cfg)
