# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Merge rules: generated settings win, the base is kept, drop-ins spelled per flavour, one warning per override."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import unit_names
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.scripts import EBS_PREPARE_SCRIPT
from ansible_collections.coreos_ec2.cluster.tests.unit.plugins.module_utils._cloud_config.helpers import (
    FLATCAR_UNITS,
    URL,
    build,
    dropin,
    units_by_name,
)


BASE = """#cloud-config
hostname: from-base
users:
  - name: ops
    groups: [docker]
ssh_authorized_keys:
  - ssh-ed25519 AAAAbase base@example
coreos:
  update:
    reboot-strategy: etcd-lock
  etcd2:
    heartbeat-interval: 200
    discovery: https://discovery.etcd.io/stale
  units:
    - name: app.service
      command: start
      content: |
        [Service]
        ExecStart=/usr/bin/sleep infinity
    - name: etcd-member.service
      command: stop
      drop-ins:
        - name: 20-clct-etcd-member.conf
          content: |
            [Service]
            Environment="ETCD_DISCOVERY=https://discovery.etcd.io/stale"
        - name: 30-mine.conf
          content: |
            [Service]
            Environment="ETCD_SNAPSHOT_COUNT=5000"
write_files:
  - path: /etc/app.conf
    content: keep me
  - path: /opt/bin/coreos-ebs-prepare
    content: "#!/bin/sh\\nmkfs /dev/sdb\\n"
"""


def test_merge_generated_wins_and_base_is_kept():
    result = build(BASE, hostname="node", ssh_authorized_keys=["ssh-ed25519 AAAAmine me@example"])
    cfg = result.cloud_config
    units = units_by_name(result)

    # Kept as they are: non-colliding units, files, keys, sections.
    assert units["app.service"]["content"] == "[Service]\nExecStart=/usr/bin/sleep infinity\n"
    assert cfg["users"] == [{"name": "ops", "groups": ["docker"]}]
    assert cfg["coreos"]["update"] == {"reboot-strategy": "etcd-lock"}
    assert {"path": "/etc/app.conf", "content": "keep me"} in cfg["write_files"]
    assert cfg["ssh_authorized_keys"] == ["ssh-ed25519 AAAAbase base@example", "ssh-ed25519 AAAAmine me@example"]

    # Generated wins where they collide; the user's own drop-in survives next to ours.
    etcd = units["etcd-member.service"]
    assert etcd["command"] == "start"
    assert f'ETCD_DISCOVERY={URL}' in dropin(etcd, "20-clct-etcd-member.conf")
    assert "ETCD_SNAPSHOT_COUNT=5000" in dropin(etcd, "30-mine.conf")
    assert "drop-ins" not in etcd  # Flatcar spelling only
    assert cfg["hostname"] == "node"
    prepare = next(f for f in cfg["write_files"] if f["path"] == "/opt/bin/coreos-ebs-prepare")
    assert prepare["content"] == EBS_PREPARE_SCRIPT
    # Flatcar has no etcd2: its section is translated (test_legacy.py), the stale URL is gone.
    assert "etcd2" not in cfg["coreos"] and "stale" not in result.user_data
    assert 'Environment="ETCD_HEARTBEAT_INTERVAL=200"' in dropin(etcd, "10-clct-coreos-etcd2.conf")

    # One warning per overridden entry, naming it but not its value.
    assert sorted(result.warnings) == sorted([
        "coreos.etcd2.discovery from the base file base.yml is replaced by the generated setting "
        "(the cluster's fresh discovery setting)",
        "coreos.etcd2.heartbeat-interval from the base file base.yml is translated to ETCD_HEARTBEAT_INTERVAL in "
        "etcd-member.service's drop-in 10-clct-coreos-etcd2.conf (Flatcar has no etcd2)",
        "hostname from the base file base.yml is replaced by the generated setting",
        "unit etcd-member.service drop-in 20-clct-etcd-member.conf from the base file base.yml is replaced by the generated setting",
        "unit etcd-member.service command from the base file base.yml is replaced by the generated setting",
        "write_files /opt/bin/coreos-ebs-prepare from the base file base.yml is replaced by the generated setting",
    ])
    assert not any("stale" in w or "discovery.etcd.io" in w for w in result.warnings)


def test_merge_coreos_sections_key_by_key():
    result = build(BASE, flavor="coreos")
    etcd2 = result.cloud_config["coreos"]["etcd2"]
    assert etcd2["discovery"] == URL
    assert etcd2["heartbeat-interval"] == 200  # the base's own etcd2 setting is kept
    assert "coreos.etcd2.discovery from the base file base.yml is replaced by the generated setting" in result.warnings


def test_merge_matches_keys_across_dash_and_underscore():
    base = "#cloud-config\ncoreos:\n  etcd2:\n    listen_client_urls: http://0.0.0.0:4001\n"
    etcd2 = build(base, flavor="coreos").cloud_config["coreos"]["etcd2"]
    assert "listen_client_urls" not in etcd2 and etcd2["listen-client-urls"] == "http://0.0.0.0:2379"


@pytest.mark.parametrize(
    "flavor, emitted, other",
    [("flatcar", "drop_ins", "drop-ins"), ("coreos", "drop-ins", "drop_ins")],
)
@pytest.mark.parametrize("base_key", ["drop_ins", "drop-ins"])
def test_drop_ins_spelling_per_flavour(flavor, emitted, other, base_key):
    base = (
        "#cloud-config\ncoreos:\n  units:\n    - name: docker.service\n"
        f"      {base_key}:\n        - name: 50-x.conf\n          content: |\n            [Service]\n"
    )
    result = build(base, flavor=flavor)
    for unit in result.cloud_config["coreos"]["units"]:
        assert other not in unit, unit["name"]
    docker = units_by_name(result)["docker.service"]
    assert docker[emitted] == [{"name": "50-x.conf", "content": "[Service]\n"}]
    assert f"  {emitted}:\n" in result.user_data and f"  {other}:\n" not in result.user_data


def test_both_spellings_in_one_base_unit_are_combined():
    base = (
        "#cloud-config\ncoreos:\n  units:\n    - name: docker.service\n"
        "      drop-ins:\n        - {name: 10-a.conf, content: a}\n"
        "      drop_ins:\n        - {name: 20-b.conf, content: b}\n"
    )
    docker = units_by_name(build(base))["docker.service"]
    assert [d["name"] for d in docker["drop_ins"]] == ["10-a.conf", "20-b.conf"]


def test_units_option_layers_over_base_and_under_generated():
    base = "#cloud-config\ncoreos:\n  units:\n    - name: app.service\n      command: stop\n"
    result = build(
        base,
        units=[
            {"name": "app.service", "command": "start"},
            {"name": "etcd-member.service", "drop_ins": [
                {"name": "20-clct-etcd-member.conf", "content": "[Service]\n"},
                {"name": "40-extra.conf", "content": "[Service]\nEnvironment=\"ETCD_HEARTBEAT_INTERVAL=200\"\n"},
            ]},
        ],
        write_files=[{"path": "/etc/extra", "content": "x", "permissions": "0600"}],
    )
    units = units_by_name(result)
    assert units["app.service"]["command"] == "start"
    etcd = units["etcd-member.service"]
    assert f"ETCD_DISCOVERY={URL}" in dropin(etcd, "20-clct-etcd-member.conf")
    assert "ETCD_HEARTBEAT_INTERVAL" in dropin(etcd, "40-extra.conf")
    assert {"path": "/etc/extra", "content": "x", "permissions": "0600"} in result.cloud_config["write_files"]
    assert "unit app.service command from the base file base.yml is replaced by the units/write_files options" in result.warnings
    assert any("20-clct-etcd-member.conf" in w and "generated setting" in w for w in result.warnings)


def test_generated_units_come_first_then_the_base_in_its_order():
    base = "#cloud-config\ncoreos:\n  units:\n    - name: z.service\n    - name: a.service\n"
    names = unit_names(build(base).cloud_config)
    assert names == FLATCAR_UNITS + ["z.service", "a.service"]


def test_identical_base_entry_is_not_a_warning():
    base = "#cloud-config\nhostname: node\n"
    assert build(base, hostname="node").warnings == []
