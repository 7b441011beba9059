# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.etcd_v3: token validation, and a token's registry read from captured v3 gateway answers."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import etcd_v3
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError


@pytest.mark.parametrize(
    "token, ok",
    [
        ("0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e", True),
        ("my-cluster.v1_2", True),
        ("", False),
        ("../../x", False),
        ("a/b", False),
        ("-flag", False),
        ("x" * 129, False),
        (None, False),
    ],
)
def test_validate_token(token, ok):
    if ok:
        assert etcd_v3.validate_token(token) == token
    else:
        with pytest.raises(ValidationError) as info:
            etcd_v3.validate_token(token)
        # The token is a secret: the message says what is allowed, never echoes the value.
        assert "token must be" in info.value.msg
        if token:
            assert token not in info.value.msg


# ---------------------------------------------------------------------------------------------------
# A token's registry, from the v3 JSON gateway's answer to a range over /_etcd/registry/<token>/

V3_TOKEN = "0f3c9b2d7a6e4c1b"


def kv(key, value, revision):
    return {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode(),
            "create_revision": str(revision), "mod_revision": str(revision), "version": "1"}


PREFIX = f"/_etcd/registry/{V3_TOKEN}"
# The gateway sorts by key and sends 64-bit numbers as strings.
RANGE_ANSWER = {"header": {"revision": "9"}, "count": "4", "kvs": [
    kv(f"{PREFIX}/_config/size", "2", 2),
    kv(f"{PREFIX}/members/8e9e05c52164694d", "m1=http://10.0.0.12:2380", 6),
    kv(f"{PREFIX}/members/91bc3c398fb3c146", "m0=http://10.0.0.11:2380", 4),
    kv(f"{PREFIX}/members/a1", "m2=http://10.0.0.13:2380", 8),
]}
EMPTY_ANSWER = {"header": {"revision": "9"}}
M0 = {"id": "91bc3c398fb3c146", "name": "m0", "peer_urls": ["http://10.0.0.11:2380"], "ip": "10.0.0.11"}
M1 = {"id": "8e9e05c52164694d", "name": "m1", "peer_urls": ["http://10.0.0.12:2380"], "ip": "10.0.0.12"}


@pytest.mark.parametrize(
    "answer, expected",
    [
        pytest.param(EMPTY_ANSWER, (False, None, []), id="no-such-token"),
        pytest.param({"kvs": RANGE_ANSWER["kvs"][:1]}, (True, 2, []), id="nobody-registered"),
        pytest.param(RANGE_ANSWER, (True, 2, [M0, M1]), id="by-create-revision-cut-to-size"),
        pytest.param({"kvs": RANGE_ANSWER["kvs"][1:3]}, (True, None, [M0, M1]), id="size-key-gone"),
    ],
)
def test_registry_of_range(answer, expected):
    assert tuple(etcd_v3.registry_of_range(answer, V3_TOKEN, "read discovery token", "http://e:2379")) == expected


def test_registry_of_range_rejects_a_size_that_is_no_number():
    answer = {"kvs": [kv(f"{PREFIX}/_config/size", "x", 2)]}
    with pytest.raises(ClusterError, match=r"^Failed to read discovery token at http://e:2379: _config/size holds 'x', not a number$"):
        etcd_v3.registry_of_range(answer, V3_TOKEN, "read discovery token", "http://e:2379")
