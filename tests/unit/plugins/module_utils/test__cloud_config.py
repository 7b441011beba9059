# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloud-config builder over tables: flavours, merge rules, names, limits and bad input."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _cloud_config as cc
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

URL = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "config", "cloud-config.example")


def settings(**params):
    params.setdefault("discovery_url", URL)
    return cc.settings_from_params(params)


def build(base=None, source="base.yml", **params):
    return cc.build_user_data(settings(**params), base, source)


def units_by_name(result):
    return {u["name"]: u for u in result.cloud_config["coreos"]["units"]}


def dropin(unit, name):
    key = "drop_ins" if "drop_ins" in unit else "drop-ins"
    return next(d["content"] for d in unit[key] if d["name"] == name)


def env_lines(text):
    return [line for line in text.splitlines() if line.startswith("Environment=")]


# ------------------------------------------------------------------------------------------
# Flavours
# ------------------------------------------------------------------------------------------

FLATCAR_UNITS = [
    "format-ebs.service", "media-ebs.mount", "etcd-member.service", "flanneld.service",
    "fleet-install.service", "fleet.socket", "fleet.service",
]
COREOS_UNITS = ["format-ebs.service", "media-ebs.mount", "etcd2.service", "flanneld.service", "fleet.service"]


@pytest.mark.parametrize(
    "params, expected_units",
    [
        ({}, FLATCAR_UNITS),
        ({"flavor": "coreos"}, COREOS_UNITS),
        ({"fleet": False}, ["format-ebs.service", "media-ebs.mount", "etcd-member.service", "flanneld.service"]),
        ({"flavor": "coreos", "fleet": False, "ebs": {"enabled": False}}, ["etcd2.service", "flanneld.service"]),
        ({"ebs": {"mount_point": "/var/lib/docker"}},
         ["format-ebs.service", "var-lib-docker.mount"] + FLATCAR_UNITS[2:]),
    ],
)
def test_generated_units_per_flavour(params, expected_units):
    result = build(**params)
    assert cc.unit_names(result.cloud_config) == expected_units
    assert result.user_data.startswith("#cloud-config\n")
    assert yaml.safe_load(result.user_data) == result.cloud_config


def test_flatcar_etcd_member_dropin_exact_lines():
    unit = units_by_name(build())["etcd-member.service"]
    assert unit["command"] == "start" and unit["enable"] is True
    assert env_lines(dropin(unit, "20-clct-etcd-member.conf")) == [
        'Environment="ETCD_IMAGE_TAG=v3.5.17"',
        'Environment="ETCD_NAME=%m"',
        'Environment="ETCD_ENABLE_V2=true"',
        f'Environment="ETCD_DISCOVERY={URL}"',
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379"',
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$private_ipv4:2380"',
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"',
        'Environment="ETCD_LISTEN_PEER_URLS=http://$private_ipv4:2380"',
    ]


def test_discovery_setting_is_found_by_the_form_other_modules_parse():
    # tests/integration/harness.py and _discovery.py read the URL back with this very pattern.
    text = build().user_data
    assert re.findall(r'ETCD_DISCOVERY=([^"\s]+)', text) == [URL]
    assert f'Environment="ETCD_DISCOVERY={URL}"' in text


def test_coreos_flavour_sections():
    result = build(flavor="coreos", fleet_metadata={"role": "web", "az": "a"})
    coreos = result.cloud_config["coreos"]
    assert coreos["etcd2"] == {
        "discovery": URL,
        "advertise-client-urls": "http://$private_ipv4:2379",
        "initial-advertise-peer-urls": "http://$private_ipv4:2380",
        "listen-client-urls": "http://0.0.0.0:2379",
        "listen-peer-urls": "http://$private_ipv4:2380",
    }
    assert coreos["fleet"] == {"metadata": "az=a,role=web", "public-ip": "$private_ipv4"}
    units = units_by_name(result)
    assert units["etcd2.service"] == {"name": "etcd2.service", "command": "start"}
    assert units["fleet.service"] == {"name": "fleet.service", "command": "start"}
    assert re.search(r"discovery:\s*(\S+)", result.user_data).group(1) == URL
    assert "etcd-member" not in result.user_data and "ETCD_ENABLE_V2" not in result.user_data


def test_flatcar_fleet_units():
    result = build(fleet_metadata={"region": "us-east-1", "cluster": "demo"})
    units = units_by_name(result)
    service = units["fleet.service"]["content"]
    assert 'Environment="FLEET_ETCD_SERVERS=http://127.0.0.1:2379"' in service
    assert 'Environment="FLEET_METADATA=cluster=demo,region=us-east-1"' in service
    assert 'Environment="FLEET_PUBLIC_IP=$private_ipv4"' in service
    assert "ExecStart=/opt/bin/fleetd\n" in service
    assert "After=fleet-install.service etcd-member.service fleet.socket" in service
    assert "ListenStream=/run/fleet.sock" in units["fleet.socket"]["content"]
    install = units["fleet-install.service"]["content"]
    assert "ConditionPathExists=|!/opt/bin/fleetd" in install
    assert "ExecStart=/opt/bin/coreos-fleet-install quay.io/coreos/fleet:v1.0.0" in install
    files = {f["path"]: f for f in result.cloud_config["write_files"]}
    assert files["/opt/bin/coreos-fleet-install"]["permissions"] == "0755"
    assert "docker cp" in files["/opt/bin/coreos-fleet-install"]["content"]


def test_flatcar_without_fleet_metadata_omits_the_line():
    service = units_by_name(build())["fleet.service"]["content"]
    assert "FLEET_METADATA" not in service


@pytest.mark.parametrize(
    "network, backend, expected",
    [
        ("10.1.0.0/16", None, '{"Network": "10.1.0.0/16"}'),
        ("10.244.0.0/14", "vxlan", '{"Network": "10.244.0.0/14", "Backend": {"Type": "vxlan"}}'),
        ("192.168.0.0/16", "host-gw", '{"Network": "192.168.0.0/16", "Backend": {"Type": "host-gw"}}'),
    ],
)
def test_flannel_config_json(network, backend, expected):
    assert cc.flannel_config_json(network, backend) == expected
    assert json.loads(expected)["Network"] == network


@pytest.mark.parametrize("flavor", ["flatcar", "coreos"])
def test_flannel_dropin_sets_config_with_v2_etcdctl(flavor):
    unit = units_by_name(build(flavor=flavor, flannel_backend="vxlan"))["flanneld.service"]
    text = dropin(unit, "50-network-config.conf")
    assert 'Environment="ETCDCTL_API=2"' in text
    assert ("ExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config "
            "'{\"Network\": \"10.1.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}'") in text
    assert unit["command"] == "start"


@pytest.mark.parametrize(
    "network",
    ["10.1.0.0", "10.1.0.1/16", "fd00::/8", "10.1.0.0/33", "not-a-network", "", "10.1.0.0/16 "],
)
def test_flannel_network_must_be_ipv4_cidr(network):
    with pytest.raises(ValidationError, match="flannel_network"):
        settings(flannel_network=network)


# ------------------------------------------------------------------------------------------
# Discovery: v2 URL, v3 token + endpoints
# ------------------------------------------------------------------------------------------

V3 = {"discovery_url": None, "discovery_token": "cluster-7f3a", "discovery_endpoints": ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]}


def test_v3_discovery_dropin_and_default_version():
    result = build(fleet=False, **V3)
    text = dropin(units_by_name(result)["etcd-member.service"], "20-clct-etcd-member.conf")
    lines = env_lines(text)
    assert 'Environment="ETCD_IMAGE_TAG=v3.6.11"' in lines
    assert 'Environment="ETCD_DISCOVERY_TOKEN=cluster-7f3a"' in lines
    assert 'Environment="ETCD_DISCOVERY_ENDPOINTS=http://10.0.0.5:2379,http://10.0.0.6:2379"' in lines
    assert not any("ETCD_ENABLE_V2" in line or "ETCD_DISCOVERY=" in line for line in lines)
    flannel = dropin(units_by_name(result)["flanneld.service"], "50-network-config.conf")
    assert 'Environment="ETCDCTL_API=3"' in flannel and "etcdctl put /coreos.com/network/config" in flannel


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(V3), "fleet needs etcd's v2 API"),
        (dict(V3, fleet=False, etcd_version="v3.5.17"), "needs etcd 3.6 or later"),
        (dict(V3, fleet=False, flavor="coreos"), "legacy CoreOS"),
        (dict(V3, fleet=False, discovery_endpoints=[]), "needs discovery_endpoints"),
        (dict(V3, fleet=False, discovery_endpoints=["10.0.0.5:2379"]), r"discovery_endpoints\[0\] must be an http"),
        (dict(V3, fleet=False, discovery_url=URL), "exclude each other"),
        (dict(V3, fleet=False, discovery_token="a b-cdefgh"), "discovery_token contains characters"),
        (dict(V3, fleet=False, discovery_token="short"), "at least 8 characters"),
        ({"discovery_url": None}, "needs a discovery setting"),
        ({"discovery_url": "discovery.etcd.io/abc"}, "discovery_url must be an http"),
        ({"discovery_url": 'https://x/"a'}, "discovery_url contains characters"),
        ({"discovery_url": "https://x/a%20b"}, "discovery_url contains characters"),
        ({"discovery_endpoints": ["http://10.0.0.5:2379"]}, "belongs to v3 discovery"),
        ({"etcd_version": "v3.6.0"}, "fleet needs etcd's v2 API"),
        ({"etcd_version": "latest"}, "not a version"),
    ],
)
def test_discovery_rules(params, message):
    with pytest.raises(ValidationError, match=message):
        settings(**params)


def test_discovery_errors_do_not_echo_the_url():
    secret = "https://discovery.etcd.io/secret-token-value with space"
    with pytest.raises(ValidationError) as err:
        settings(discovery_url=secret)
    assert "secret-token-value" not in err.value.msg


@pytest.mark.parametrize(
    "params, expected_tag, v2",
    [
        ({}, "v3.5.17", True),
        ({"etcd_version": "3.5.9"}, "v3.5.9", True),
        ({"etcd_version": "v3.6.4", "fleet": False}, "v3.6.4", False),
        (dict(V3, fleet=False, etcd_version="v3.7.0"), "v3.7.0", False),
    ],
)
def test_etcd_version_and_v2_api(params, expected_tag, v2):
    s = settings(**params)
    assert s.effective_etcd_version == expected_tag
    assert s.etcd_v2_api is v2
    assert ('ETCD_ENABLE_V2=true' in cc.etcd_member_dropin(s)) is v2


def test_coreos_ignores_etcd_version_with_a_warning():
    result = build(flavor="coreos", etcd_version="v3.5.17")
    assert any("etcd_version is ignored" in w for w in result.warnings)


# ------------------------------------------------------------------------------------------
# fleet metadata
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({}, ""),
        ({"region": "us-east-1"}, "region=us-east-1"),
        ({"role": "web", "az": "us-east-1a", "cluster": "demo"}, "az=us-east-1a,cluster=demo,role=web"),
        ({"ssd": True, "cores": 4}, "cores=4,ssd=true"),
        ({" spaced ": " value "}, "spaced=value"),
    ],
)
def test_format_fleet_metadata(metadata, expected):
    assert cc.format_fleet_metadata(metadata) == expected


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"a=b": "c"}, "without '=' or ','"),
        ({"a,b": "c"}, "without '=' or ','"),
        ({"": "c"}, "non-empty"),
        ({"a": "b,c"}, "must not contain ','"),
        ({"a": 'b"c'}, "cannot go into a systemd unit"),
        ({"a": "50%"}, "cannot go into a systemd unit"),
        ({"a": ["x"]}, "string or a number"),
        ({"a": None}, "string or a number"),
    ],
)
def test_format_fleet_metadata_rejects(metadata, message):
    with pytest.raises(ValidationError, match=message):
        cc.format_fleet_metadata(metadata)


# ------------------------------------------------------------------------------------------
# Names: mount units, unit names
# ------------------------------------------------------------------------------------------

# Expected values are what `systemd-escape --path` prints for the same input (systemd 252).
ESCAPES = [
    ("/media/ebs", "media-ebs"),
    ("/", "-"),
    ("/media/my-ebs", "media-my\\x2debs"),
    ("/var/lib/docker", "var-lib-docker"),
    ("/media/a b", "media-a\\x20b"),
    ("/media/.hidden", "media-.hidden"),
    ("/.hidden", "\\x2ehidden"),
    ("/media/x.y", "media-x.y"),
    ("/mnt/\u00fc", "mnt-\\xc3\\xbc"),
    ("/media//ebs/", "media-ebs"),
    ("/a:b_c@d", "a:b_c\\x40d"),
]


@pytest.mark.parametrize("path, expected", ESCAPES)
def test_systemd_escape_path(path, expected):
    assert cc.systemd_escape_path(path) == expected


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="systemd-escape is not installed")
def test_systemd_escape_path_agrees_with_systemd():
    for path, _expected in ESCAPES:
        real = subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True, check=True)
        assert cc.systemd_escape_path(path) == real.stdout.strip(), path


@pytest.mark.parametrize("path", ["", "/media/../etc", "/media/./ebs"])
def test_systemd_escape_path_rejects(path):
    with pytest.raises(ValidationError):
        cc.systemd_escape_path(path)


def test_mount_unit_named_after_escaped_mount_point():
    result = build(ebs={"mount_point": "/media/my-ebs", "label": "data"})
    units = units_by_name(result)
    mount = units["media-my\\x2debs.mount"]["content"]
    assert "Where=/media/my-ebs\n" in mount and "What=/dev/disk/by-label/data\n" in mount
    assert "Requires=format-ebs.service" in mount and "After=format-ebs.service" in mount
    assert "ExecStart=/opt/bin/coreos-ebs-prepare /dev/sdb data ext4" in units["format-ebs.service"]["content"]


@pytest.mark.parametrize(
    "name",
    ["etcd-member.service", "media-ebs.mount", "foo@.service", "foo@bar.service", "foo@bar@baz.service",
     "media-my\\x2debs.mount", "a:b_c.d.timer", "00-eth0.network", "sockets.target", "x.socket"],
)
def test_valid_unit_names(name):
    assert cc.unit_name_problem(name) is None


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
    assert problem in cc.unit_name_problem(name)


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
        cc.validate_unit(unit, "units[0]")


@pytest.mark.parametrize("command", list(cc.UNIT_COMMANDS))
def test_unit_commands_accepted(command):
    cc.validate_unit({"name": "x.service", "command": command, "enable": True}, "units[0]")


def test_units_option_is_validated_before_building():
    with pytest.raises(ValidationError, match=r"units\[0\]"):
        settings(units=[{"name": "bad name.service", "command": "start"}])


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
    assert cc.unit_names(build(text).cloud_config) == FLATCAR_UNITS


def test_shipped_example_passes_validation_for_both_flavours():
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    assert "discovery" not in yaml.safe_load(text).get("coreos", {}).get("etcd2", {})
    for flavor in ("flatcar", "coreos"):
        result = build(text, source="config/cloud-config.example", flavor=flavor)
        assert result.warnings == []
        names = cc.unit_names(result.cloud_config)
        assert "data-dirs.service" in names and "docker.service" in names
        assert result.cloud_config["coreos"]["update"] == {"reboot-strategy": "etcd-lock"}


# ------------------------------------------------------------------------------------------
# Merge rules
# ------------------------------------------------------------------------------------------

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
    assert prepare["content"] == cc.EBS_PREPARE_SCRIPT
    assert "discovery.etcd.io/stale\"" not in result.user_data.replace("etcd2", "")  # only etcd2 keeps it

    # One warning per overridden entry, naming it but not its value.
    assert sorted(result.warnings) == sorted([
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
    names = cc.unit_names(build(base).cloud_config)
    assert names == FLATCAR_UNITS + ["z.service", "a.service"]


def test_identical_base_entry_is_not_a_warning():
    base = "#cloud-config\nhostname: node\n"
    assert build(base, hostname="node").warnings == []


def test_binary_content_survives_and_is_json_safe():
    payload = base64.b64encode(b"\x1f\x8b\x00binary").decode()
    base = f"#cloud-config\nwrite_files:\n  - path: /etc/blob\n    encoding: gzip\n    content: !!binary |\n      {payload}\n"
    result = build(base)
    blob = next(f for f in result.cloud_config["write_files"] if f["path"] == "/etc/blob")
    assert blob["content"] == payload
    json.dumps(result.cloud_config)
    assert yaml.safe_load(result.user_data)["write_files"][-1]["content"] == b"\x1f\x8b\x00binary"


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
    assert result.size < cc.EC2_USER_DATA_LIMIT


def test_size_limit_boundary():
    # Grow a file until the user data is exactly at the limit: accepted; one byte more: rejected.
    probe = build(write_files=[{"path": "/etc/pad", "content": "x"}])
    room = cc.EC2_USER_DATA_LIMIT - probe.size
    exact = build(write_files=[{"path": "/etc/pad", "content": "x" * (1 + room)}])
    assert exact.size == cc.EC2_USER_DATA_LIMIT
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


def test_duplicate_names_after_merge_are_rejected():
    cfg = {"coreos": {"units": [{"name": "a.service"}, {"name": "a.service"}]}}
    with pytest.raises(ValidationError, match="appears twice"):
        cc.validate_cloud_config(cfg)


# ------------------------------------------------------------------------------------------
# EBS settings and the other options
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "ebs, message",
    [
        ({"device": "sdb"}, "ebs.device"),
        ({"device": "/dev/sd b"}, "ebs.device"),
        ({"filesystem": "ntfs"}, "ebs.filesystem"),
        ({"label": "this-label-is-too-long"}, "ebs.label"),
        ({"label": "twelve-chars-x", "filesystem": "xfs"}, "ebs.label"),
        ({"label": "bad label"}, "ebs.label"),
        ({"mount_point": "media/ebs"}, "ebs.mount_point"),
        ({"mount_point": "/"}, "ebs.mount_point"),
        ({"mount_point": "/media/../etc"}, "ebs.mount_point"),
        ({"mount_point": "/media/ebs/"}, "ebs.mount_point"),
        ({"mount_point": "/usr/local/data"}, "read-only /usr"),
        ({"bogus": 1}, "unknown key"),
    ],
)
def test_ebs_validation(ebs, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        settings(ebs=ebs)


def test_ebs_disabled_skips_checks_and_units():
    result = build(ebs={"enabled": False, "label": "not checked when disabled!"})
    assert "format-ebs.service" not in cc.unit_names(result.cloud_config)
    assert all(f["path"] != cc.EBS_SCRIPT_PATH for f in result.cloud_config["write_files"])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"flavor": "rhel"}, "flavor"),
        ({"hostname": "bad_host"}, "hostname"),
        ({"hostname": "-bad"}, "hostname"),
        ({"ssh_authorized_keys": ["ssh-rsa AAA\nssh-rsa BBB"]}, "ssh_authorized_keys"),
        ({"fleet_image": "quay.io/coreos/fleet:v1.0.0 --privileged"}, "fleet_image"),
        ({"flannel_backend": "VXLAN!"}, "flannel_backend"),
        ({"write_files": [{"path": "/usr/share/x", "content": "x"}]}, "read-only /usr"),
    ],
)
def test_option_validation(params, message):
    with pytest.raises(ValidationError, match=message):
        settings(**params)


def test_ansible_none_suboptions_are_dropped():
    s = settings(
        units=[{"name": "a.service", "command": None, "enable": None, "mask": None, "runtime": None,
                "content": "[Service]\n", "drop_ins": None}],
        write_files=[{"path": "/etc/a", "content": "a", "permissions": None, "owner": None, "encoding": None}],
        ebs={"enabled": None, "device": None, "filesystem": None, "mount_point": None, "label": None},
    )
    assert s.units == [{"name": "a.service", "content": "[Service]\n"}]
    assert s.write_files == [{"path": "/etc/a", "content": "a"}]
    assert s.ebs == cc.EbsSettings()
