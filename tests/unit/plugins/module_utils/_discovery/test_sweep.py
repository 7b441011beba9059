# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Orphaned tokens: those no machine or interrupted launch names."""

from __future__ import annotations

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import sweep as sw

LISTING = {"node": {"key": "/_etcd/registry", "dir": True, "nodes": [
    {"key": "/_etcd/registry/aaa", "dir": True}, {"key": "/_etcd/registry/bbb", "dir": True},
    {"key": "/_etcd/registry/ccc", "dir": True}, {"key": "/_etcd/registry/stray-value", "value": "1"}]}}


def test_tokens_and_orphans():
    assert sw.registry_tokens(LISTING) == ["aaa", "bbb", "ccc"]
    assert sw.registry_tokens({}) == [] and sw.registry_tokens(None) == []
    used = ["http://10.0.0.1:4003/aaa", "http://127.0.0.1:4001/v2/keys/_etcd/registry/ccc/", ""]
    assert sw.orphan_tokens(["aaa", "bbb", "ccc"], used) == ["bbb"]
    assert sw.token_of_url("https://discovery.etcd.io/abc") == "abc" and sw.token_of_url("") == ""
