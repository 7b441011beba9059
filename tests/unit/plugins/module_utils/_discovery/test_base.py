# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.base: backend_for picks and binds the backend of each protocol, without any request."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import backend_for
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

from discovery_fixtures import PUBLIC_URL, TOKEN, V2_URL


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        (("public",), {}, ("public", False, "https://discovery.etcd.io", "", "", [])),
        (("public", "http://127.0.0.1:4003/"), {}, ("public", False, "http://127.0.0.1:4003", "", "", [])),
        (("public",), {"url": PUBLIC_URL}, ("public", False, "https://discovery.etcd.io", PUBLIC_URL, TOKEN, [])),
        (("etcd_v2", "http://10.0.0.5:2379/"), {}, ("etcd_v2", True, "http://10.0.0.5:2379", "", "", [])),
        # The URL names the etcd: a service given beside it is not used.
        (("etcd_v2", "http://other:2379"), {"url": V2_URL + "/"},
         ("etcd_v2", True, "http://10.0.0.5:2379", V2_URL, "0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e", [])),
        (("etcd_v3", "http://10.0.0.5:2379"), {"token": "abc"}, ("etcd_v3", True, "http://10.0.0.5:2379", "", "abc", ["http://10.0.0.5:2379"])),
        (("etcd_v3",), {"endpoints": ["http://a:1", "http://b:1/"]}, ("etcd_v3", True, "http://a:1, http://b:1", "", "", ["http://a:1", "http://b:1"])),
    ],
)
def test_backend_for(args, kwargs, expected):
    backend = backend_for(*args, **kwargs)
    assert (backend.protocol, backend.deletable, backend.service, backend.discovery_url, backend.token, backend.endpoints) == expected


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        (("bogus",), {}, "protocol must be one of public, etcd_v2, etcd_v3, got 'bogus'"),
        (("etcd_v2",), {}, "service or url is required with protocol=etcd_v2"),
        (("etcd_v3",), {}, "endpoints must be a non-empty list"),
        (("etcd_v3", "http://a:1"), {"token": "a/b"}, "token must be 1-128 characters"),
        (("public", "ftp://x"), {}, "service must be an http:// or https:// URL"),
    ],
)
def test_backend_for_rejects(args, kwargs, error):
    with pytest.raises(ValidationError, match=error):
        backend_for(*args, **kwargs)


@pytest.mark.parametrize(
    "protocol, kwargs, error",
    [
        ("etcd_v2", {"service": "http://10.0.0.5:2379"}, "url is required with protocol=etcd_v2"),
        ("etcd_v3", {"service": "http://10.0.0.5:2379"}, "token is required with protocol=etcd_v3"),
        ("public", {}, "url is required with protocol=public"),
    ],
)
def test_reading_needs_a_bound_token(protocol, kwargs, error):
    with pytest.raises(ValidationError, match=error):
        backend_for(protocol, **kwargs).read()
