# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base file and the rendered user data: header, YAML errors, structure, size limit, round trip."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import unit_names
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.user_data import EC2_USER_DATA_LIMIT
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.tests.unit.plugins.module_utils._cloud_config.helpers import (
    EXAMPLE,
    FLATCAR_UNITS,
    build,
)


# ------------------------------------------------------------------------------------------
# Base file: header, YAML errors, structure
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, message",
    [
        ("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: [start\n",
         "line 6, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 5)"),
        ("#cloud-config\nwrite_files:\n  - path: /etc/x\n   content: y\n", "line 4"),
        ("#cloud-config\nhostname: a\nhostname: b\n", "line 3"),
        ("#cloud-config\ncoreos:\n\tunits: []\n", "line 3"),
        ("#cloud-config\nfoo: 'unterminated\n", "line 3"),
    ],
)
def test_malformed_base_names_file_and_line(text, message):
    with pytest.raises(ValidationError) as err:
        build(text, source="config/my-cloud-config.yml")
    assert err.value.msg.startswith("config/my-cloud-config.yml: invalid YAML at ")
    assert message in err.value.msg


@pytest.mark.parametrize(
    "text, message",
    [
        ("coreos: {}\n", "line 1 must be '#cloud-config'"),
        ("#!/bin/bash\necho hi\n", "line 1 must be '#cloud-config'"),
        ("\n#cloud-config\n", "line 1 must be '#cloud-config'"),
        ("#cloud-config\n- a\n- b\n", "top level must be a mapping"),
        ("#cloud-config\njust text\n", "top level must be a mapping"),
        ("#cloud-config\ncoreos: [a]\n", "coreos must be a mapping"),
        ("#cloud-config\ncoreos:\n  units: {a: b}\n", "coreos.units must be a list"),
        ("#cloud-config\ncoreos:\n  units:\n    - name: a.bogus\n", "not a valid systemd unit name"),
        ("#cloud-config\nwrite_files: {path: /x}\n", "write_files must be a list"),
        ("#cloud-config\nwrite_files:\n  - path: relative/x\n", "must be an absolute path"),
        ("#cloud-config\nwrite_files:\n  - path: /usr/bin/x\n", "read-only /usr"),
        ("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 999\n", "must be octal"),
    ],
)
def test_bad_base_structure(text, message):
    with pytest.raises(ValidationError) as err:
        build(text, source="base.yml")
    assert err.value.msg.startswith("base.yml")
    assert message in err.value.msg


@pytest.mark.parametrize("text", ["#cloud-config\n", "#cloud-config   \n# only comments\n", "#cloud-config"])
def test_empty_base_is_fine(text):
    assert unit_names(build(text).cloud_config) == FLATCAR_UNITS


def test_shipped_example_passes_validation_for_both_flavours():
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    assert "discovery" not in yaml.safe_load(text).get("coreos", {}).get("etcd2", {})
    for flavor in ("flatcar", "coreos"):
        result = build(text, source="config/cloud-config.example", flavor=flavor)
        assert result.warnings == []
        names = unit_names(result.cloud_config)
        assert "data-dirs.service" in names and "docker.service" in names
        assert result.cloud_config["coreos"]["update"] == {"reboot-strategy": "etcd-lock"}


# ------------------------------------------------------------------------------------------
# Size limit and rendering
# ------------------------------------------------------------------------------------------

def test_size_limit_names_size_and_limit():
    base = "#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: " + "x" * 16000 + "\n"
    with pytest.raises(ValidationError) as err:
        build(base)
    match = re.search(r"user data is (\d+) bytes, over EC2's limit of 16384 bytes", err.value.msg)
    assert match and int(match.group(1)) > 16384


def test_size_is_the_utf8_byte_count_and_default_fits():
    result = build(hostname="node", units=[{"name": "u.service", "content": "[Unit]\nDescription=caf\u00e9\n"}])
    assert result.size == len(result.user_data.encode("utf-8"))
    assert result.size < EC2_USER_DATA_LIMIT


def test_size_limit_boundary():
    # Grow a file until the user data is exactly at the limit: accepted; one byte more: rejected.
    probe = build(write_files=[{"path": "/etc/pad", "content": "x"}])
    room = EC2_USER_DATA_LIMIT - probe.size
    exact = build(write_files=[{"path": "/etc/pad", "content": "x" * (1 + room)}])
    assert exact.size == EC2_USER_DATA_LIMIT
    with pytest.raises(ValidationError, match="16385 bytes"):
        build(write_files=[{"path": "/etc/pad", "content": "x" * (2 + room)}])


def test_multiline_strings_are_literal_blocks():
    text = build().user_data
    assert "    content: |\n      [Unit]\n" in text
    assert "&id" not in text and "*id" not in text


def test_round_trip_with_awkward_strings():
    content = "  leading spaces\ntrailing spaces   \n\ttab\n# not a comment\nkey: value\n\n"
    result = build(write_files=[{"path": "/etc/awkward", "content": content}])
    back = next(f for f in yaml.safe_load(result.user_data)["write_files"] if f["path"] == "/etc/awkward")
    assert back["content"] == content


def test_binary_content_survives_and_is_json_safe():
    payload = base64.b64encode(b"\x1f\x8b\x00binary").decode()
    base = f"#cloud-config\nwrite_files:\n  - path: /etc/blob\n    encoding: gzip\n    content: !!binary |\n      {payload}\n"
    result = build(base)
    blob = next(f for f in result.cloud_config["write_files"] if f["path"] == "/etc/blob")
    assert blob["content"] == payload
    json.dumps(result.cloud_config)
    assert yaml.safe_load(result.user_data)["write_files"][-1]["content"] == b"\x1f\x8b\x00binary"
