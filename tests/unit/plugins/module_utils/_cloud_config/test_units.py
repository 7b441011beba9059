# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The generated units and drop-ins per flavour: etcd-member, flannel, fleet, EBS, and systemd path escaping."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import unit_names
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.scripts import EBS_SCRIPT_PATH
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.units import (
    flannel_config_json,
    systemd_escape_path,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.tests.unit.plugins.module_utils._cloud_config.helpers import (
    COREOS_UNITS,
    FLATCAR_UNITS,
    URL,
    V3,
    build,
    dropin,
    env_lines,
    units_by_name,
)


# ------------------------------------------------------------------------------------------
# Flavours
# ------------------------------------------------------------------------------------------

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
    assert unit_names(result.cloud_config) == expected_units
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
    assert flannel_config_json(network, backend) == expected
    assert json.loads(expected)["Network"] == network


@pytest.mark.parametrize("flavor", ["flatcar", "coreos"])
def test_flannel_dropin_sets_config_with_v2_etcdctl(flavor):
    unit = units_by_name(build(flavor=flavor, flannel_backend="vxlan"))["flanneld.service"]
    text = dropin(unit, "50-network-config.conf")
    assert 'Environment="ETCDCTL_API=2"' in text
    assert ("ExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config "
            "'{\"Network\": \"10.1.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}'") in text
    assert unit["command"] == "start"


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


# ------------------------------------------------------------------------------------------
# EBS volume
# ------------------------------------------------------------------------------------------

def test_ebs_disabled_skips_checks_and_units():
    result = build(ebs={"enabled": False, "label": "not checked when disabled!"})
    assert "format-ebs.service" not in unit_names(result.cloud_config)
    assert all(f["path"] != EBS_SCRIPT_PATH for f in result.cloud_config["write_files"])


# ------------------------------------------------------------------------------------------
# Names: mount units
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
    assert systemd_escape_path(path) == expected


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="systemd-escape is not installed")
def test_systemd_escape_path_agrees_with_systemd():
    for path, _expected in ESCAPES:
        real = subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True, check=True)
        assert systemd_escape_path(path) == real.stdout.strip(), path


@pytest.mark.parametrize("path", ["", "/media/../etc", "/media/./ebs"])
def test_systemd_escape_path_rejects(path):
    with pytest.raises(ValidationError):
        systemd_escape_path(path)


def test_mount_unit_named_after_escaped_mount_point():
    result = build(ebs={"mount_point": "/media/my-ebs", "label": "data"})
    units = units_by_name(result)
    mount = units["media-my\\x2debs.mount"]["content"]
    assert "Where=/media/my-ebs\n" in mount and "What=/dev/disk/by-label/data\n" in mount
    assert "Requires=format-ebs.service" in mount and "After=format-ebs.service" in mount
    assert "ExecStart=/opt/bin/coreos-ebs-prepare /dev/sdb data ext4" in units["format-ebs.service"]["content"]
