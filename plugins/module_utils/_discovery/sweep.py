# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tokens nobody uses any more, in an etcd that keeps discovery tokens (the sandbox's own).

A token is in use while a machine's user data or an interrupted launch's record (a tag on a cluster's security
group) names it. Everything else under /_etcd/registry is an orphan: minted by a launch that then failed, was
interrupted before any machine carried it, or whose cluster the emulator forgot when the sandbox restarted.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import REGISTRY_PREFIX


def token_of_url(url: str) -> str:
    """The token in a discovery URL: its last path segment (public https://host/<token>, v2 .../registry/<token>)."""
    return url.rstrip("/").rsplit("/", 1)[-1] if url else ""


def registry_tokens(listing: Optional[Dict[str, Any]]) -> List[str]:
    """The token names in a v2 listing of /_etcd/registry (directories only), sorted."""
    nodes = ((listing or {}).get("node") or {}).get("nodes") or []
    prefix = REGISTRY_PREFIX + "/"
    return sorted(n["key"][len(prefix):] for n in nodes if n.get("dir") and str(n.get("key", "")).startswith(prefix))


def orphan_tokens(tokens: Iterable[str], referenced_urls: Iterable[str]) -> List[str]:
    """The tokens no referenced URL names."""
    used: Set[str] = {token_of_url(u) for u in referenced_urls if u}
    return sorted(t for t in tokens if t not in used)
