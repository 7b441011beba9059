# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.states: what discovery_token does in each state, without etcd.

etcd-backed runs of the module are in tests/integration/test_discovery_members.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import states as d
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

from discovery_fixtures import FLATCAR_V2, FLATCAR_V3, PUBLIC_URL, TOKEN, V3_RESULT, FakeDiscovery, b64, ok, refused_url


# ---------------------------------------------------------------------------------------------------
# ensure_present / ensure_absent without etcd


def test_ensure_present_reuses_without_network():
    # The service does not exist: reuse must not touch it.
    result = d.ensure_present("public", 3, service=refused_url(), existing_user_data=["", b64(FLATCAR_V2)], retries=0)
    assert result["changed"] is False and result["reused"] is True
    assert result["discovery_url"] == PUBLIC_URL and result["token"] == TOKEN
    assert result["protocol"] == "public" and result["size"] is None and result["warnings"] == []
    assert result["diff"] == {"before": {"token_exists": True}, "after": {"token_exists": True}}


def test_ensure_present_reuse_warns_on_other_protocol():
    result = d.ensure_present("etcd_v2", 3, service="http://10.0.0.5:2379", existing_user_data=[FLATCAR_V3])
    assert result["reused"] is True and result["protocol"] == "etcd_v3"
    assert result["token"] == "0f3c9b2d7a6e4c1b" and result["endpoints"] == V3_RESULT["endpoints"]
    assert result["discovery_url"] == ""
    assert result["warnings"] == ["The running instances use protocol etcd_v3, not the requested etcd_v2; reusing theirs"]


def test_ensure_present_check_mode_mints_nothing():
    with FakeDiscovery([ok()]) as service:
        result = d.ensure_present("public", 3, service=service.url, existing_user_data=["#cloud-config\n"], check_mode=True)
    assert service.requests == []
    assert result["changed"] is True and result["discovery_url"] == "" and result["token"] == ""
    assert result["diff"] == {"before": {"token_exists": False}, "after": {"token_exists": True}}


def test_ensure_present_public_mints():
    with FakeDiscovery([ok()]) as service:
        result = d.ensure_present("public", 3, service=service.url)
    assert service.requests == ["/new?size=3"]
    assert result["changed"] is True and result["reused"] is False
    assert result["discovery_url"] == f"{service.url}/{TOKEN}" and result["token"] == TOKEN


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: d.ensure_present("etcd_v2", 3), "service is required with protocol=etcd_v2"),
        (lambda: d.ensure_present("etcd_v3", 3), "endpoints must be a non-empty list"),
        (lambda: d.ensure_present("public", 3, endpoints=["http://a:1"]), "endpoints is only used with protocol=etcd_v3"),
        (lambda: d.ensure_present("public", 0), "size must be at least 1"),
        (lambda: d.ensure_present("bogus", 3), "protocol must be one of"),
        (lambda: d.ensure_absent("public", url=PUBLIC_URL), "state=absent needs protocol=etcd_v2 or etcd_v3"),
        (lambda: d.ensure_absent("etcd_v2"), "url is required with state=absent"),
        (lambda: d.ensure_absent("etcd_v2", url=PUBLIC_URL), "url must be an etcd v2 discovery URL"),
        (lambda: d.ensure_absent("etcd_v3", endpoints=["http://a:1"]), "token is required"),
        (lambda: d.ensure_absent("etcd_v3", token="abc"), "endpoints must be a non-empty list"),
    ],
)
def test_ensure_validation(call, error):
    with pytest.raises(ValidationError, match=error):
        call()


# ---------------------------------------------------------------------------------------------------
# token_info (discovery_token_info)

V2_TOKEN_URL = "http://127.0.0.1:9/v2/keys/_etcd/registry/0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e"
LISTING = ('{"action":"get","node":{"key":"/_etcd/registry/' + TOKEN + '","dir":true,"nodes":[{"key":"/_etcd/registry/'
           + TOKEN + '/8e9e05c52164694d","value":"m0=http://10.0.0.11:2380","modifiedIndex":5,"createdIndex":5}]}}')
SIZE = '{"action":"get","node":{"key":"/_etcd/registry/' + TOKEN + '/_config/size","value":"3"}}'
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "url, token, expected",
    [
        (V2_TOKEN_URL, None, "etcd_v2"),
        (PUBLIC_URL, None, "public"),
        (f"http://127.0.0.1:4003/{TOKEN}", "abc", "public"),
        (None, "abc", "etcd_v3"),
    ],
)
def test_infer_protocol(url, token, expected):
    assert d.infer_protocol(url, token) == expected


def test_token_info_public_reads_size_and_members():
    with FakeDiscovery([(200, LISTING, JSON, 0), (200, SIZE, JSON, 0)]) as service:
        result = d.token_info(url=f"{service.url}/{TOKEN}/", timeout=5)
    assert result == {
        "changed": False, "protocol": "public", "discovery_url": f"{service.url}/{TOKEN}", "service": service.url,
        "token": TOKEN, "endpoints": [], "size": 3, "exists": True, "deletable": False,
        "members": [{"id": "8e9e05c52164694d", "name": "m0", "peer_urls": ["http://10.0.0.11:2380"], "ip": "10.0.0.11"}],
    }


def test_token_info_unreadable_is_no_failure():
    url = refused_url()
    result = d.token_info(url=f"{url}/v2/keys/_etcd/registry/{TOKEN}", retries=0)
    assert result["protocol"] == "etcd_v2" and result["service"] == url and result["deletable"] is True
    assert result["exists"] is None and result["size"] is None and result["members"] == []
    assert result["msg"].startswith(f"Failed to read discovery token at {url}: connection failed:")
    assert TOKEN not in result["msg"]


def test_token_info_v3_needs_no_url():
    result = d.token_info(token="abc", service=refused_url(), retries=0)
    assert result["protocol"] == "etcd_v3" and result["service"] == "" and len(result["endpoints"]) == 1
    assert result["deletable"] is True and result["discovery_url"] == "" and "msg" in result


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({}, "url is required: the discovery URL to read"),
        ({"protocol": "etcd_v2"}, "url is required with protocol=etcd_v2"),
        ({"protocol": "etcd_v2", "url": PUBLIC_URL}, "url must be an etcd v2 discovery URL"),
        ({"protocol": "public", "url": "https://discovery.etcd.io/new"}, "url must be a discovery URL like"),
        ({"url": V2_TOKEN_URL, "token": "abc"}, "token and endpoints are only used with protocol=etcd_v3, not etcd_v2"),
        ({"protocol": "etcd_v3", "url": V2_TOKEN_URL, "token": "abc", "service": "http://e:1"}, "url is only used with"),
        ({"protocol": "etcd_v3", "service": "http://e:1"}, "token is required with protocol=etcd_v3"),
        ({"protocol": "etcd_v3", "token": "abc"}, "endpoints must be a non-empty list"),
        ({"protocol": "bogus", "url": PUBLIC_URL}, "protocol must be one of"),
        ({"url": PUBLIC_URL, "timeout": 0}, "timeout must be"),
    ],
)
def test_token_info_validation(kwargs, error):
    with pytest.raises(ValidationError, match=error):
        d.token_info(**kwargs)
