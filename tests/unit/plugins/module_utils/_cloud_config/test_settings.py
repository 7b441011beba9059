# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings over tables: discovery, etcd versions, fleet metadata, flannel network, EBS and the other options."""

from __future__ import annotations

import re

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import (
    EbsSettings,
    format_fleet_metadata,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.units import etcd_member_dropin
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.tests.unit.plugins.module_utils._cloud_config.helpers import (
    URL,
    V3,
    build,
    settings,
)


# ------------------------------------------------------------------------------------------
# Discovery: v2 URL, v3 token + endpoints
# ------------------------------------------------------------------------------------------

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
    assert ('ETCD_ENABLE_V2=true' in etcd_member_dropin(s)) is v2


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
    assert format_fleet_metadata(metadata) == expected


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
        format_fleet_metadata(metadata)


# ------------------------------------------------------------------------------------------
# flannel network, units option
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "network",
    ["10.1.0.0", "10.1.0.1/16", "fd00::/8", "10.1.0.0/33", "not-a-network", "", "10.1.0.0/16 "],
)
def test_flannel_network_must_be_ipv4_cidr(network):
    with pytest.raises(ValidationError, match="flannel_network"):
        settings(flannel_network=network)


def test_units_option_is_validated_before_building():
    with pytest.raises(ValidationError, match=r"units\[0\]"):
        settings(units=[{"name": "bad name.service", "command": "start"}])


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
    assert s.ebs == EbsSettings()
