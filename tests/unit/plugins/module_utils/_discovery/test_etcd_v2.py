# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.etcd_v2: URL validation, and a token's registry read from captured v2 keys API answers.

Requests against a real etcd are in tests/integration/test_discovery_members.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import etcd_v2
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

from discovery_fixtures import PUBLIC_URL, V2_URL


@pytest.mark.parametrize(
    "url, ok",
    [
        (V2_URL, True),
        (V2_URL + "/", True),
        ("https://etcd.example.com/v2/keys/discovery/abc", True),
        ("http://10.0.0.5:2379/v2/keys/", False),
        ("http://10.0.0.5:2379/v2/keys", False),
        (PUBLIC_URL, False),
        ("10.0.0.5:2379/v2/keys/x", False),
        (None, False),
    ],
)
def test_validate_v2_url(url, ok):
    if ok:
        assert etcd_v2.validate_v2_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ValidationError, match="^url must be an etcd v2 discovery URL"):
            etcd_v2.validate_v2_url(url)


# ---------------------------------------------------------------------------------------------------
# A token's registry, from answers captured from etcd 3.4 (--enable-v2) through discovery.etcd.io

TOKEN_DIR = "/_etcd/registry/a61970b7db835ee73876829b5c5352ae"
# GET <token URL> right after /new?size=3: the directory exists, nobody registered yet.
EMPTY_LISTING = {"action": "get", "node": {"key": TOKEN_DIR, "dir": True, "modifiedIndex": 4, "createdIndex": 4}}
# GET <token URL> once four machines registered (the fourth after the cluster was full: a proxy).
FULL_LISTING = {"action": "get", "node": {"key": TOKEN_DIR, "dir": True, "modifiedIndex": 4, "createdIndex": 4, "nodes": [
    {"key": f"{TOKEN_DIR}/b1d2c3e4f5a60718", "value": "m1=http://10.0.0.12:2380", "modifiedIndex": 7, "createdIndex": 7},
    {"key": f"{TOKEN_DIR}/8e9e05c52164694d", "value": "m0=http://10.0.0.11:2380", "modifiedIndex": 5, "createdIndex": 5},
    {"key": f"{TOKEN_DIR}/0000000000000abc", "value": "m3=http://10.0.0.14:2380", "modifiedIndex": 11, "createdIndex": 11},
    {"key": f"{TOKEN_DIR}/91bc3c398fb3c146", "value": "m2=http://m2.internal:2380,m2=http://10.0.0.13:2380",
     "modifiedIndex": 9, "createdIndex": 9},
    {"key": f"{TOKEN_DIR}/not-a-member", "value": "garbage", "modifiedIndex": 10, "createdIndex": 10},
]}}
# GET <token URL>/_config/size
SIZE_ANSWER = {"action": "get", "node": {"key": f"{TOKEN_DIR}/_config/size", "value": "3", "modifiedIndex": 4, "createdIndex": 4}}

M0 = {"id": "8e9e05c52164694d", "name": "m0", "peer_urls": ["http://10.0.0.11:2380"], "ip": "10.0.0.11"}
M1 = {"id": "b1d2c3e4f5a60718", "name": "m1", "peer_urls": ["http://10.0.0.12:2380"], "ip": "10.0.0.12"}
M2 = {"id": "91bc3c398fb3c146", "name": "m2", "peer_urls": ["http://m2.internal:2380", "http://10.0.0.13:2380"], "ip": "10.0.0.13"}
M3 = {"id": "0000000000000abc", "name": "m3", "peer_urls": ["http://10.0.0.14:2380"], "ip": "10.0.0.14"}


@pytest.mark.parametrize(
    "listing, size, expected",
    [
        pytest.param(None, None, (False, None, []), id="key-not-found"),
        pytest.param(EMPTY_LISTING, 3, (True, 3, []), id="nobody-registered"),
        pytest.param(FULL_LISTING, 3, (True, 3, [M0, M1, M2]), id="cut-to-size-in-registration-order"),
        pytest.param(FULL_LISTING, None, (True, None, [M0, M1, M2, M3]), id="size-unknown-keeps-all"),
        pytest.param(FULL_LISTING, 99, (True, 99, [M0, M1, M2, M3]), id="not-full-yet"),
        pytest.param({"action": "get", "node": {"key": "/app/color", "value": "blue"}}, None, (True, None, []), id="a-key-not-a-dir"),
    ],
)
def test_registry_of_answers(listing, size, expected):
    assert tuple(etcd_v2.registry_of_answers(listing, size)) == expected


def test_size_of_answer():
    assert etcd_v2.size_of_answer(SIZE_ANSWER, "read discovery token", "http://e:2379") == 3
    broken = {"action": "get", "node": {"key": f"{TOKEN_DIR}/_config/size", "value": "three"}}
    with pytest.raises(ClusterError, match=r"^Failed to read discovery token at http://e:2379: _config/size holds 'three', not a number$"):
        etcd_v2.size_of_answer(broken, "read discovery token", "http://e:2379")


@pytest.mark.parametrize(
    "url, is_v2",
    [(V2_URL, True), (PUBLIC_URL, False), ("http://127.0.0.1:4003/0123456789abcdef", False), ("http://h/x/v2/keys/t", True)],
)
def test_is_v2_url(url, is_v2):
    assert etcd_v2.is_v2_url(url) is is_v2
