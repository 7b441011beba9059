# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tokens nobody uses any more, in an etcd that keeps discovery tokens (the sandbox's own).

A token is in use while a machine's user data or an interrupted launch's record (a tag on a cluster's security
group) names it. Everything else under /_etcd/registry is an orphan: minted by a launch that then failed, was
interrupted before any machine carried it, or whose cluster the emulator forgot when the sandbox restarted.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple
from urllib.parse import urlencode

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import REGISTRY_PREFIX
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import (
    HttpStatusError,
    Transport,
    transport_argument_spec,
    transport_options,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


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


def sweep_argument_spec() -> Dict[str, Any]:
    """The discovery_sweep module's options (the module and the controller-side action plugin)."""
    return dict(
        service=dict(type="str", required=True),
        referenced=dict(type="list", elements="str", default=[], no_log=True),
        **transport_argument_spec(),
    )


def run_sweep(p: Dict[str, Any], check_mode: bool = False) -> Tuple[Dict[str, Any], List[str]]:
    """Delete the tokens of the service's registry that no URL in p['referenced'] names; raises ClusterError."""
    transport = Transport(**transport_options(p))
    base = p["service"].rstrip("/") + "/v2/keys" + REGISTRY_PREFIX
    try:
        try:
            listing = json.loads(transport.request("GET", base)[1])
        except HttpStatusError as exc:
            if exc.code != 404:
                raise
            listing = {}
        tokens = registry_tokens(listing)
        orphans = orphan_tokens(tokens, p["referenced"])
        if not check_mode:
            for token in orphans:
                try:
                    transport.request("DELETE", f"{base}/{token}?{urlencode({'recursive': 'true', 'dir': 'true'})}")
                except HttpStatusError as exc:
                    if exc.code != 404:  # gone already: another cleanup was quicker
                        raise
    except ClusterError as exc:
        raise ClusterError(f"Failed to sweep the discovery tokens at {p['service']}: {exc.msg}") from exc
    except (HttpStatusError, OSError, ValueError) as exc:
        raise ClusterError(f"Failed to sweep the discovery tokens at {p['service']}: {exc}") from exc
    return {"changed": bool(orphans), "removed": len(orphans), "kept": len(tokens) - len(orphans),
            "diff": {"before": {"tokens": len(tokens)}, "after": {"tokens": len(tokens) - len(orphans)}}}, []
