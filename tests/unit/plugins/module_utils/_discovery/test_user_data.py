# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.user_data: finding the discovery setting in instances' user data."""

from __future__ import annotations

import base64
import gzip

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import user_data as u
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError

from discovery_fixtures import (
    BROKEN_YAML, EXECSTART, EXECSTART_EQUALS, FLATCAR_V2, FLATCAR_V3, IGNITION_DATA_URL, IGNITION_DROPIN, LEGACY_COREOS,
    PUBLIC_RESULT, PUBLIC_URL, SCRIPT, TOKEN, V2_RESULT, V2_URL, V3_FLAGS, V3_RESULT, b64, b64_wrapped,
)


@pytest.mark.parametrize(
    "user_data, expected",
    [
        pytest.param(FLATCAR_V2, PUBLIC_RESULT, id="flatcar-v2"),
        pytest.param(b64(FLATCAR_V2), PUBLIC_RESULT, id="flatcar-v2-base64"),
        pytest.param(b64_wrapped(FLATCAR_V2), PUBLIC_RESULT, id="flatcar-v2-base64-wrapped"),
        pytest.param(base64.b64encode(gzip.compress(FLATCAR_V2.encode())).decode(), PUBLIC_RESULT, id="flatcar-v2-gzip-base64"),
        pytest.param(FLATCAR_V3, V3_RESULT, id="flatcar-v3"),
        pytest.param(b64(FLATCAR_V3), V3_RESULT, id="flatcar-v3-base64"),
        pytest.param(LEGACY_COREOS, PUBLIC_RESULT, id="legacy-coreos-etcd2"),
        pytest.param(b64(LEGACY_COREOS), PUBLIC_RESULT, id="legacy-coreos-etcd2-base64"),
        pytest.param(LEGACY_COREOS.replace("etcd2:", "etcd:"), PUBLIC_RESULT, id="legacy-coreos-etcd1"),
        pytest.param(EXECSTART, V2_RESULT, id="execstart-flag-space"),
        pytest.param(EXECSTART_EQUALS, V2_RESULT, id="execstart-flag-equals"),
        pytest.param(EXECSTART_EQUALS.replace("--discovery=", "-discovery="), V2_RESULT, id="execstart-single-dash"),
        pytest.param(SCRIPT, PUBLIC_RESULT, id="shell-export-quoted"),
        pytest.param(f"Environment=ETCD_DISCOVERY={V2_URL}", V2_RESULT, id="unquoted-environment"),
        pytest.param(f'Environment="ETCD_NAME=a" "ETCD_DISCOVERY={V2_URL}"', V2_RESULT, id="two-assignments-one-line"),
        pytest.param(IGNITION_DROPIN, V2_RESULT, id="ignition-dropin"),
        pytest.param(b64(IGNITION_DROPIN), V2_RESULT, id="ignition-dropin-base64"),
        pytest.param(IGNITION_DATA_URL, V2_RESULT, id="ignition-data-url"),
        pytest.param(BROKEN_YAML, PUBLIC_RESULT, id="broken-yaml-regex-fallback"),
        pytest.param(V3_FLAGS, {"protocol": "v3", "token": "abc123", "endpoints": ["http://10.0.0.5:2379"]}, id="v3-flags"),
        pytest.param(FLATCAR_V2 + f'            Environment="ETCD_DISCOVERY={PUBLIC_URL}"\n', PUBLIC_RESULT, id="same-url-twice"),
        pytest.param(LEGACY_COREOS + FLATCAR_V2.split("\n", 1)[1].replace("coreos:\n", ""), PUBLIC_RESULT, id="legacy-and-dropin-agree"),
        # Not discovery settings at all:
        pytest.param("#cloud-config\nhostname: a\n", None, id="no-discovery"),
        pytest.param('Environment="ETCD_DISCOVERY_SRV=example.com"', None, id="discovery-srv-only"),
        pytest.param('Environment="ETCD_DISCOVERY=$DISCOVERY_URL"', None, id="unexpanded-variable"),
        pytest.param("ExecStart=/usr/bin/etcd --discovery-fallback exit", None, id="fallback-flag-only"),
        pytest.param("", None, id="empty"),
        pytest.param("   \n", None, id="blank"),
        pytest.param(None, None, id="none"),
        pytest.param(b64("#!/bin/sh\necho hello\n"), None, id="base64-script-without-discovery"),
    ],
)
def test_find_discovery_in_user_data(user_data, expected):
    assert u.find_discovery_in_user_data(user_data) == expected


@pytest.mark.parametrize(
    "user_data, error",
    [
        pytest.param(FLATCAR_V2 + f'            Environment="ETCD_DISCOVERY={V2_URL}"\n', "2 different etcd discovery URLs", id="two-urls"),
        pytest.param('Environment="ETCD_DISCOVERY_TOKEN=abc"', "no ETCD_DISCOVERY_ENDPOINTS", id="v3-without-endpoints"),
        pytest.param(FLATCAR_V3 + f'            Environment="ETCD_DISCOVERY={V2_URL}"\n', "both a v2 discovery URL and a v3", id="v2-and-v3"),
        pytest.param(
            'Environment="ETCD_DISCOVERY_TOKEN=a"\nEnvironment="ETCD_DISCOVERY_TOKEN=b"\nEnvironment="ETCD_DISCOVERY_ENDPOINTS=http://x:1"',
            "2 different etcd discovery tokens", id="two-tokens",
        ),
    ],
)
def test_find_discovery_contradictions(user_data, error):
    with pytest.raises(ClusterError, match=error) as info:
        u.find_discovery_in_user_data(user_data)
    # The settings are secrets; a message describes the conflict without quoting them.
    assert TOKEN not in info.value.msg and "10.0.0.5" not in info.value.msg


@pytest.mark.parametrize(
    "user_data_list, expected, error",
    [
        pytest.param([], None, None, id="no-instances"),
        pytest.param(["", None, "#cloud-config\n"], None, None, id="nothing-found"),
        pytest.param(["", b64(FLATCAR_V2), FLATCAR_V2], PUBLIC_RESULT, None, id="agree-raw-and-base64"),
        pytest.param([FLATCAR_V2, LEGACY_COREOS], PUBLIC_RESULT, None, id="agree-across-flavours"),
        pytest.param(
            [FLATCAR_V3, FLATCAR_V3.replace("http://10.0.0.5:2379,http://10.0.0.6:2379", "http://10.0.0.6:2379,http://10.0.0.5:2379")],
            V3_RESULT, None, id="v3-endpoint-order-ignored",
        ),
        pytest.param([FLATCAR_V2, "", EXECSTART], None, r"existing_user_data\[0\] and existing_user_data\[2\] carry different", id="disagree"),
        pytest.param(["", 'Environment="ETCD_DISCOVERY_TOKEN=abc"'], None, r"^existing_user_data\[1\]: .*no ETCD_DISCOVERY_ENDPOINTS", id="broken-one"),
    ],
)
def test_find_discovery_in_instances(user_data_list, expected, error):
    if error:
        with pytest.raises(ClusterError, match=error):
            u.find_discovery_in_instances(user_data_list)
    else:
        assert u.find_discovery_in_instances(user_data_list) == expected


@pytest.mark.parametrize(
    "setting, expected",
    [
        (PUBLIC_RESULT, ("public", TOKEN)),
        (V2_RESULT, ("etcd_v2", "0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e")),
        (V3_RESULT, ("etcd_v3", "0f3c9b2d7a6e4c1b")),
    ],
)
def test_describe_reused(setting, expected):
    assert u.describe_reused(setting) == expected


# ---------------------------------------------------------------------------------------------------
# The contract with the cloud-config generator: what it writes, this module reads back.


@pytest.mark.parametrize(
    "params, expected",
    [
        pytest.param({"flavor": "flatcar", "discovery_url": PUBLIC_URL}, PUBLIC_RESULT, id="flatcar-v2"),
        pytest.param({"flavor": "coreos", "discovery_url": V2_URL}, V2_RESULT, id="coreos-etcd2"),
        pytest.param(
            {"flavor": "flatcar", "fleet": False, "discovery_token": "0f3c9b2d7a6e4c1b",
             "discovery_endpoints": V3_RESULT["endpoints"]},
            V3_RESULT, id="flatcar-v3",
        ),
    ],
)
def test_reads_back_generated_user_data(params, expected):
    cc_build = pytest.importorskip("ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.build")
    cc_settings = pytest.importorskip("ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings")
    user_data = cc_build.build_user_data(cc_settings.settings_from_params(params)).user_data
    assert u.find_discovery_in_user_data(user_data) == expected
    assert u.find_discovery_in_user_data(b64(user_data)) == expected
