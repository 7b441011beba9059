# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-two operations on a running cluster, as pure functions the ops role calls through filters.

- state_counts: how many machines are in each EC2 state.
- mask_url: a discovery URL fit for a report (the token lets anyone join a bootstrapping cluster).
- discovery_members: the etcd members a discovery token registered, from its v2 keys API answer.
- scale_plan: which machines to add or remove to reach a size without ever removing an etcd member.
- inspect_table: one plain-text report of machines, firewall, discovery and per-machine probes.

"Rows" are the flat machine dicts of _cluster.instance_row (id, state, instance_type, availability_zone,
private_ip, public_ip, public_dns_name, launch_time, volume_id, volume_status; inspect_table also reads an
optional volume_size). Nothing here talks to AWS, etcd or a machine: the role gathers, these functions decide
and describe, so every decision is testable over tables of captured answers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._placement import cluster_subnets, spread, spread_removal
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._values import whole_number

MASK = "\u2026(masked)"
# How much of a token a report shows: enough to tell two clusters apart, far too little to join one.
MASK_KEEP = 4
# The states of a machine that still exists. shutting-down and terminated machines are gone for etcd's
# purposes and must neither count toward the size nor be offered for removal.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
NOT_SET = "-"

# etcd v2 discovery keeps the token's settings in <token dir>/_config; everything else in the directory
# is a member registration (etcd server/etcdserver/api/v2discovery/discovery.go, checkCluster).
_CONFIG_NODE = "_config"
# A registration's key ends in the member id that etcd prints as 16 hex digits (types.ID.String()).
_MEMBER_ID_RE = re.compile(r"^[0-9a-fA-F]{1,16}$")
_WHITESPACE_RE = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------------------
# Input checks shared by the functions below


def _check_rows(rows: Any, option: str = "rows") -> List[Mapping[str, Any]]:
    """The rows as a list of dicts that each carry an id; None means no machines."""
    if rows is None:
        return []
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ValidationError(f"{option} must be a list of machine rows (coreos_ec2.cluster.instance_rows), got {type(rows).__name__}")
    result = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str) or not row.get("id"):
            raise ValidationError(f"{option}[{index}] is not a machine row: expected a dict with an instance 'id'")
        result.append(row)
    return result


def _positive_int(value: Any, option: str) -> int:
    """An int >= 1. Digit strings are accepted because `-e cluster_size=3` arrives as a string."""
    value = whole_number(value, option, "a whole number of machines of at least 1")
    if value < 1:
        raise ValidationError(f"{option} must be at least 1, got {value}: a cluster needs one machine to keep etcd's data")
    return value


def _text(value: Any) -> str:
    """A value as one line of a report cell: None and '' become '-', line breaks become spaces."""
    if value is None:
        return NOT_SET
    text = _WHITESPACE_RE.sub(" ", str(value)).strip()
    return text or NOT_SET


def _age_key(row: Mapping[str, Any]) -> Tuple[str, str]:
    # The same order as _cluster.instance_rows: launch time, then id to break ties deterministically.
    return (str(row.get("launch_time") or ""), str(row.get("id")))


def _plural(count: int, word: str, plural: Optional[str] = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


# ---------------------------------------------------------------------------------------------------
# state_counts


def state_counts(rows: Any) -> Dict[str, int]:
    """Machines per EC2 state, keys sorted, e.g. {"running": 2, "stopped": 1}.

    A row without a state counts as "unknown" rather than vanishing, so the counts always add up to the
    number of rows.
    """
    counts: Dict[str, int] = {}
    for row in _check_rows(rows):
        state = str(row.get("state") or "unknown")
        counts[state] = counts.get(state, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------------------------------
# mask_url


def _mask_token(token: str) -> str:
    # Never show the whole token, even a short one: keep at most MASK_KEEP characters and always fewer
    # than it has.
    keep = min(MASK_KEEP, max(len(token) - 1, 0))
    return token[:keep] + MASK


def mask_url(url: Any) -> str:
    """A discovery URL with its token masked, for reports and logs.

    Keeps scheme, host, port and the path up to the token (which says which service and registry it is)
    and the first 4 characters of the token (enough to tell clusters apart):
    https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579 -> https://discovery.etcd.io/3e86…(masked).
    Credentials, query and fragment are dropped or masked too. Anything that is not an http(s) URL (a bare
    etcd v3 token, say) is masked as a whole. None and "" give "".
    """
    if url is None:
        return ""
    if not isinstance(url, str):
        raise ValidationError(f"mask_url expects the discovery URL as a string, got {type(url).__name__}")
    text = url.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return _mask_token(text)
    if parts.scheme not in ("http", "https") or not host:
        return _mask_token(text)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = MASK + "@" + netloc
    path = parts.path.rstrip("/")
    prefix, token = path.rsplit("/", 1) if "/" in path else ("", path)
    masked = f"{parts.scheme}://{netloc}"
    if token:
        masked += f"{prefix}/{_mask_token(token)}"
    if parts.query or parts.fragment:
        masked += "?" + MASK
    return masked


# ---------------------------------------------------------------------------------------------------
# discovery_members


def _registry_node(registry: Any) -> Optional[Mapping[str, Any]]:
    """The token directory node in an etcd v2 keys answer (or the node itself), None when there is none."""
    if isinstance(registry, (str, bytes)):
        if not registry.strip():
            return None
        try:
            registry = json.loads(registry)
        except ValueError:
            raise ValidationError("the discovery registry is not JSON: expected the answer of a GET of the discovery URL") from None
    if isinstance(registry, Mapping):
        node = registry.get("node", registry)
        return node if isinstance(node, Mapping) else None
    return None


def _ip_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""


def _parse_registration(key: str, value: str) -> Optional[Dict[str, Any]]:
    """One member from a registration `name=url[,name=url...]`, or None when it is not one.

    etcd registers InitialPeerURLsMap.String(): every advertised peer URL as name=url, comma-separated,
    all with the member's name (types.URLsMap.String).
    """
    member_id = key.rstrip("/").rsplit("/", 1)[-1]
    if not _MEMBER_ID_RE.match(member_id):
        return None
    name = None
    urls: List[str] = []
    for pair in value.split(","):
        pair_name, sep, url = pair.strip().partition("=")
        if not sep or not pair_name or (name is not None and pair_name != name):
            return None
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            return None
        if parts.scheme not in ("http", "https", "unix", "unixs") or not host:
            return None
        name = pair_name
        if url.strip() not in urls:
            urls.append(url.strip())
    ip = next((ip for ip in (_ip_of(urlsplit(u).hostname or "") for u in urls) if ip), "")
    return {"id": member_id.lower(), "name": name, "peer_urls": urls, "ip": ip}


def _config_size(node: Mapping[str, Any]) -> Optional[int]:
    """The token size when the answer carries _config/size (a recursive GET), else None."""
    for child in node.get("nodes") or []:
        if not isinstance(child, Mapping) or str(child.get("key", "")).rstrip("/").rsplit("/", 1)[-1] != "size":
            continue
        try:
            size = int(str(child.get("value", "")).strip())
        except ValueError:
            return None
        return size if size >= 1 else None
    return None


def discovery_members(registry: Any) -> List[Dict[str, Any]]:
    """The members a discovery token registered, as [{"id", "name", "peer_urls", "ip"}, ...].

    `registry` is the JSON of a GET of the token directory: from a self-hosted etcd's v2 keys API
    (<endpoint>/v2/keys/_etcd/registry/<token>) or from the public service (GET <token URL>), which answer
    the same shape {"action": "get", "node": {"key": ..., "dir": true, "nodes": [...]}}. The node itself,
    or that JSON as a string, also work. `ip` is the first peer URL host that is an IP address ("" when
    members advertise host names).

    Members come in registration order (createdIndex). etcd counts only the first <size> registrations
    as members; a machine that registers later finds the cluster full and becomes a proxy, so when the
    answer includes _config/size (a recursive GET) the list is cut to that size. The `_config` directory
    and anything that is not a `name=url` registration under a member id key are ignored. An etcd error
    answer (e.g. errorCode 100, the token does not exist) and None give [].
    """
    if registry is None:
        return []
    if isinstance(registry, (list, tuple)):
        nodes: Sequence[Any] = registry
        size = None
    else:
        if not isinstance(registry, (str, bytes, Mapping)):
            raise ValidationError(
                f"the discovery registry must be the JSON answer of the discovery URL (a dict), got {type(registry).__name__}"
            )
        node = _registry_node(registry)
        if node is None:
            return []
        nodes = node.get("nodes") or []
        if not isinstance(nodes, (list, tuple)):
            return []
        size = None
        for child in nodes:
            if isinstance(child, Mapping) and str(child.get("key", "")).rstrip("/").rsplit("/", 1)[-1] == _CONFIG_NODE:
                size = _config_size(child)

    found: List[Tuple[float, int, Dict[str, Any]]] = []
    seen = set()
    for position, child in enumerate(nodes):
        if not isinstance(child, Mapping) or child.get("dir"):
            continue
        key, value = child.get("key"), child.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        if key.rstrip("/").rsplit("/", 1)[-1] == _CONFIG_NODE:
            continue
        member = _parse_registration(key, value)
        if member is None or member["id"] in seen:
            continue
        seen.add(member["id"])
        created = child.get("createdIndex")
        order = float(created) if isinstance(created, int) and not isinstance(created, bool) else float("inf")
        found.append((order, position, member))
    found.sort(key=lambda item: (item[0], item[1]))
    members = [item[2] for item in found]
    return members[:size] if size is not None else members


# ---------------------------------------------------------------------------------------------------
# scale_plan


def _member_ip_set(member_ips: Any) -> set:
    """IPs from a list of strings, or from discovery_members' dicts (their 'ip')."""
    if member_ips is None:
        return set()
    if isinstance(member_ips, (str, bytes, Mapping)) or not isinstance(member_ips, Iterable):
        raise ValidationError(
            "member_ips must be a list of IP addresses (or the list that discovery_members returns), "
            f"got {type(member_ips).__name__}"
        )
    ips = set()
    for entry in member_ips:
        value = entry.get("ip") if isinstance(entry, Mapping) else entry
        if isinstance(value, str) and value.strip():
            ips.add(value.strip())
    return ips


def _id_list(rows: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(str(r["id"]) for r in rows)


def _members_basis(registered: int, assumed: int, registry_known: bool) -> str:
    """How the members were identified, for messages: an operator must see when we guessed."""
    if not assumed:
        return "as registered in discovery"
    oldest = "the oldest machine" if assumed == 1 else f"the {assumed} oldest machines"
    if registered:
        others = "the oldest other machine" if assumed == 1 else f"the {assumed} oldest other machines"
        return f"{registered} registered in discovery; {others} assumed, as members register first"
    if registry_known:
        return f"discovery names no address of these machines, so {oldest} assumed, as members register first"
    return f"none registered in discovery, so {oldest} assumed, as members register first"


def scale_plan(rows: Any, target_size: Any, token_size: Any, member_ips: Any = None) -> Dict[str, Any]:
    """What to do to bring the cluster to target_size machines, never removing an etcd member.

    Returns {"action": "grow"|"shrink"|"none", "current", "target", "add", "remove", "members", "reason"}.
    `rows` are the cluster's machines; rows in states other than pending/running/stopping/stopped are
    ignored. `members` lists the ids treated as etcd members, oldest first:
    - the machines whose private_ip the discovery registry names (member_ips);
    - when fewer than token_size machines are identified that way (the token is not filled yet, the
      registry is unknown, or it names addresses we cannot map to a machine), also the oldest other
      machines until token_size are protected: they boot and register first, and protecting a proxy by
      mistake costs a machine, while removing a member by mistake can cost the quorum.
    Growing adds target - current machines (those beyond the token size join etcd as proxies; scale_placement
    says where). Shrinking removes only non-members, newest first (launch_time, then id, descending), each from the
    subnet with the most machines left (so a cluster spread over zones stays spread); when that is not enough it
    raises ClusterError naming the members and the smallest size reachable.
    """
    target = _positive_int(target_size, "target_size")
    token = _positive_int(token_size, "token_size")
    registered_ips = _member_ip_set(member_ips)
    live = sorted((r for r in _check_rows(rows) if r.get("state") in LIVE_STATES), key=_age_key)
    current = len(live)

    registered = [r for r in live if r.get("private_ip") and r.get("private_ip") in registered_ips]
    registered_ids = {r["id"] for r in registered}
    # Oldest first: the machines that booted first registered first.
    assumed = [r for r in live if r["id"] not in registered_ids][:max(token - len(registered), 0)]
    member_ids = registered_ids | {r["id"] for r in assumed}
    members = [r for r in live if r["id"] in member_ids]
    proxies = [r for r in live if r["id"] not in member_ids]
    basis = _members_basis(len(registered), len(assumed), bool(registered_ips))

    plan: Dict[str, Any] = {
        "action": "none", "current": current, "target": target, "add": 0, "remove": [],
        "members": [r["id"] for r in members], "reason": "",
    }
    if target == current:
        plan["reason"] = f"The cluster already has {_plural(current, 'machine')}, the target size."
        return plan
    if target > current:
        plan.update(action="grow", add=target - current)
        plan["reason"] = (
            f"Adding {_plural(target - current, 'machine')} to grow from {current} to {target}; "
            f"machines beyond the discovery token size {token} join etcd as proxies."
        )
        return plan

    excess = current - target
    if excess > len(proxies):
        if proxies:
            only = f"Only the {_plural(len(proxies), 'proxy', 'proxies')} can be removed"
        else:
            only = "No machine is a proxy"
        raise ClusterError(
            f"Refusing to scale cluster down to {target}: machines {_id_list(members)} are etcd members "
            f"(the discovery token has size {token}; {basis}); removing a member breaks etcd's quorum. "
            f"{only}, so the smallest size is {len(members)}.",
            members=[r["id"] for r in members], smallest_size=len(members),
        )
    # Newest first, each from the subnet (zone) with the most machines left, so the spread over zones stays even.
    removed_ids = spread_removal(live, sorted(proxies, key=_age_key, reverse=True), excess)
    by_id = {r["id"]: r for r in live}
    removed = [by_id[i] for i in removed_ids]
    plan.update(action="shrink", remove=removed_ids)
    spread_note = " from the fullest zones" if len(cluster_subnets(live)) > 1 else ""
    plan["reason"] = (
        f"Removing the {'newest proxy' if excess == 1 else f'{excess} newest proxies'}{spread_note} {_id_list(removed)} to shrink from "
        f"{current} to {target}; the etcd members {_id_list(members)} stay ({basis})."
    )
    return plan


def scale_placement(rows: Any, target_size: Any) -> List[Dict[str, Any]]:
    """Where a grow puts its new machines: the subnets the cluster's machines are in, each to its count (spread()),
    only those that get new machines. A cluster whose machines name no subnet gets one entry without a subnet."""
    target = _positive_int(target_size, "target_size")
    live = [r for r in _check_rows(rows) if r.get("state") in LIVE_STATES]
    subnets = cluster_subnets(live)
    if not subnets:
        return [{"subnet_id": "", "availability_zone": "", "count": target, "new": max(target - len(live), 0)}]
    return [p for p in spread(live, subnets, target) if p["new"] > 0]


# ---------------------------------------------------------------------------------------------------
# inspect_table


_TABLE_COLUMNS = (
    ("INSTANCE", lambda r: r.get("id")),
    ("STATE", lambda r: r.get("state")),
    ("TYPE", lambda r: r.get("instance_type")),
    ("ZONE", lambda r: r.get("availability_zone")),
    ("LIFECYCLE", lambda r: r.get("lifecycle")),
    ("PRIVATE IP", lambda r: r.get("private_ip")),
    # Without public DNS (a VPC without DNS hostnames, or the emulator) the public IP is how to reach it.
    ("PUBLIC DNS", lambda r: r.get("public_dns_name") or r.get("public_ip")),
    ("LAUNCHED", lambda r: r.get("launch_time")),
    ("VOLUME", lambda r: r.get("volume_id")),
    ("SIZE", lambda r: f"{r['volume_size']} GiB" if r.get("volume_size") not in (None, "") else None),
    ("VOLUME STATE", lambda r: r.get("volume_status")),
)

# EC2 reports protocol numbers for everything but tcp, udp and icmp; -1 means all traffic.
_PROTOCOL_NAMES = {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


def _aligned(table: Sequence[Sequence[str]], indent: str = "") -> List[str]:
    """Rows of cells as lines, each column as wide as its widest cell, without trailing spaces."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip() for row in table]


def _port_range(protocol: str, permission: Mapping[str, Any]) -> str:
    low, high = permission.get("from_port"), permission.get("to_port")
    if protocol in ("icmp", "icmpv6"):
        # For ICMP, EC2 puts the type in from_port and the code in to_port; -1 means any.
        if low in (None, -1):
            return ""
        return f"type {low}" + (f" code {high}" if high not in (None, -1) else "")
    if protocol not in ("tcp", "udp"):
        return ""  # all traffic, or a protocol without ports (EC2 ignores them there)
    if low is None or low == -1:
        return "all ports"
    if high is None or high == low:
        return str(low)
    return f"{low}-{high}"


def _rule_lines(group: Mapping[str, Any]) -> List[str]:
    """Ingress rules as `tcp 22 from 203.0.113.0/24`, one line per source, sorted so reports compare."""
    own_id = group.get("group_id")
    lines: List[Tuple[Tuple[Any, ...], str]] = []
    for permission in group.get("ip_permissions") or []:
        if not isinstance(permission, Mapping):
            continue
        raw = str(permission.get("ip_protocol", "-1"))
        protocol = _PROTOCOL_NAMES.get(raw, raw if not raw.isdigit() else f"protocol {raw}")
        ports = _port_range(protocol, permission)
        what = f"{protocol} {ports}".strip()
        sources = []
        for item in permission.get("ip_ranges") or []:
            sources.append(str(item.get("cidr_ip")))
        for item in permission.get("ipv6_ranges") or []:
            sources.append(str(item.get("cidr_ipv6")))
        for item in permission.get("user_id_group_pairs") or []:
            group_id = item.get("group_id") or item.get("group_name")
            sources.append(f"{group_id} (this group)" if own_id and group_id == own_id else str(group_id))
        for item in permission.get("prefix_list_ids") or []:
            sources.append(str(item.get("prefix_list_id")))
        low = permission.get("from_port")
        order = (protocol, low if isinstance(low, int) else -1)
        if not sources:
            lines.append((order + ("",), f"{what} from nowhere"))
        for source in sources:
            lines.append((order + (source,), f"{what} from {source}"))
    return [item[1] for item in sorted(lines)]


def _groups(security_group: Any) -> List[Mapping[str, Any]]:
    if security_group is None:
        return []
    if isinstance(security_group, Mapping):
        # The whole ec2_security_group_info result works too.
        if "security_groups" in security_group:
            return _groups(security_group.get("security_groups"))
        return [security_group] if security_group else []
    if isinstance(security_group, (list, tuple)):
        return [g for g in security_group if isinstance(g, Mapping)]
    raise ValidationError(
        "security_group must be a group as amazon.aws.ec2_security_group_info returns it (a dict), "
        f"got {type(security_group).__name__}"
    )


def _probe_text(probe: Any) -> str:
    if not isinstance(probe, Mapping):
        return "not probed"
    error = _text(probe.get("error"))
    reachable = probe.get("reachable")
    if reachable is None:
        reachable = error == NOT_SET
    if not reachable:
        return f"unreachable: {error if error != NOT_SET else 'no reason given'}"
    text = f"etcd: {_text(probe.get('etcd'))}, fleet: {_text(probe.get('fleet'))}"
    return text + (f", error: {error}" if error != NOT_SET else "")


# What a probe may also report, in the order of the report, and how each is labelled.
_PROBE_DETAILS = (("members", "etcd members"), ("flannel", "flannel"), ("ebs", "/media/ebs"), ("failed", "failed units"))


def _probe_details(probe: Any) -> List[str]:
    """Indented lines for the sections a probe reported beyond etcd's health and fleet (one line per member)."""
    if not isinstance(probe, Mapping) or not probe.get("reachable", True):
        return []
    lines: List[str] = []
    for key, label in _PROBE_DETAILS:
        if key not in probe:
            continue
        values = [line.strip() for line in str(probe[key]).splitlines() if line.strip()]
        if key == "failed" and not values:
            values = ["none"]
        if key == "ebs" and not values:
            values = ["not mounted"]
        lines.append(f"    {label}: {values[0] if values else NOT_SET}")
        lines += [f"    {' ' * len(label)}  {value}" for value in values[1:]]
    return lines


def _fleet_lines(fleet: Any) -> List[str]:
    """fleet's view (a fleet_info result: machines, unit_files), or why there is none."""
    if not isinstance(fleet, Mapping) or not fleet:
        return []
    if fleet.get("error"):
        return ["", f"Fleet: not read ({_text(fleet['error'])})"]
    machines, units = fleet.get("machines") or [], fleet.get("unit_files") or []
    lines = ["", f"Fleet: {_plural(len(machines), 'machine')}, {_plural(len(units), 'unit')}"
             + (f" (read through {fleet['via']})" if fleet.get("via") else "")]
    if units:
        table = [["UNIT", "DSTATE", "STATE", "MACHINE"]]
        table += [[_text(u.get("unit")), _text(u.get("dstate")), _text(u.get("state")),
                   "global" if u.get("global") else _text(u.get("target_ip") or u.get("target"))] for u in units]
        lines += _aligned(table, indent="  ")
    return lines


def inspect_table(rows: Any, security_group: Any = None, discovery_url: Any = "", probes: Any = None,
                  fleet: Any = None) -> str:
    """A plain-text report of the cluster for a person at a terminal.

    Sections: a summary line; a table of machines (oldest first; missing values as "-"); the security
    group and its ingress rules (`security_group` as amazon.aws.ec2_security_group_info returns a group, a
    list of them or the whole result); the discovery URL, masked; and per machine what the probes found
    (`probes` maps instance id to {"reachable", "etcd", "fleet", "error"}); and fleet's units when `fleet` (a
    fleet_info result, with "via" the machine it was read through, or {"error": why}) is given. Columns are aligned, lines carry
    no trailing spaces, the text has no final newline (`split('\\n')` in a debug task gives no empty last line)
    and the same input always gives the same text, so it can be compared and diffed.
    """
    machines = sorted(_check_rows(rows), key=_age_key)
    if probes is not None and not isinstance(probes, Mapping):
        raise ValidationError(f"probes must be a dict of instance id to probe result, got {type(probes).__name__}")
    probes = probes or {}
    counts = state_counts(machines)

    lines = [f"Cluster: {_plural(len(machines), 'machine')}"
             + (" (" + ", ".join(f"{n} {state}" for state, n in counts.items()) + ")" if counts else "")]
    lines.append("")
    if machines:
        table = [[column[0] for column in _TABLE_COLUMNS]]
        table += [[_text(column[1](row)) for column in _TABLE_COLUMNS] for row in machines]
        lines += _aligned(table)
    else:
        lines.append("No machines found.")

    lines.append("")
    groups = _groups(security_group)
    if not groups:
        lines.append("Security group: not found")
    for group in groups:
        lines.append(f"Security group: {_text(group.get('group_id'))} ({_text(group.get('group_name'))})")
        rules = _rule_lines(group)
        lines += [f"  {rule}" for rule in rules] or ["  no ingress rules"]

    lines.append("")
    lines.append(f"Discovery: {mask_url(discovery_url) or 'not found'}")

    if machines:
        lines.append("")
        lines.append("Probes:")
        for row in machines:
            lines += _aligned([[str(row["id"]), _probe_text(probes.get(row["id"]))]], indent="  ")
            lines += _probe_details(probes.get(row["id"]))
    lines += _fleet_lines(fleet)
    return "\n".join(lines)


def foreign_instances(instances: Any, tag_key: str, cluster_name: str) -> List[str]:
    """Ids of the machines in `instances` (ec2_instance_info's list) that do not carry this cluster's tag.

    Cleanup must neither terminate them nor pretend the cluster's security group can go while they use it.
    """
    if not isinstance(instances, list):
        raise ValidationError(f"instances must be a list of machines, got {type(instances).__name__}")
    foreign = []
    for machine in instances:
        if not isinstance(machine, Mapping) or "instance_id" not in machine:
            raise ValidationError(f"each machine must be a dict with instance_id, got {machine!r}")
        tags = machine.get("tags") or {}
        if tags.get(tag_key) != cluster_name:
            foreign.append(str(machine["instance_id"]))
    return sorted(foreign)


def cleanup_plan(rows: Any, security_groups: Any, foreign: Any, token_info: Any, cluster_name: str) -> Dict[str, Any]:
    """What cleanup removes, keeps and leaves, and the sentences that say so.

    `rows` are the cluster's machines; `security_groups` the cluster's group as ec2_security_group_info lists it
    (zero or one); `foreign` the ids of machines outside the cluster still in that group (the group is then kept:
    deleting it would fail forever, and those machines are not ours to terminate); `token_info` what
    discovery_token_info read ({} when the cluster has no token). A token that could not be read stays in the plan:
    its delete then fails naming the service instead of leaving the token behind in silence.
    """
    machines = [str(row["id"]) for row in _check_rows(rows)]
    groups = _groups(security_groups)
    group_id = str(groups[0].get("group_id") or "") if groups else ""
    strangers = sorted(str(s) for s in foreign or [])
    info = token_info if isinstance(token_info, Mapping) else {}
    readable_or_unknown = info.get("exists") is not False and bool(info.get("protocol"))
    token = bool(info.get("deletable")) and readable_or_unknown
    public_token = info.get("protocol") == "public" and readable_or_unknown
    security_group = "" if strangers else group_id
    removes = ([f"machines {', '.join(machines)}"] if machines else []) + (
        [f"security group {security_group}"] if security_group else []) + (
        ["the self-hosted discovery token"] if token else [])
    if removes:
        summary = f"Cleanup of cluster {cluster_name} removes: {'; '.join(removes)}."
    else:
        summary = f"Nothing to clean up for cluster {cluster_name}."
    left: List[str] = []
    if strangers:
        summary += (f" It keeps security group {group_id}: machines outside the cluster still use it "
                    f"({', '.join(strangers)}).")
        left.append(f"security group {group_id} (still used by {', '.join(strangers)}, which are not part of the "
                    "cluster; move or terminate them, then run cleanup again)")
    if public_token:
        left.append("the public discovery token (the public service offers no delete; it expires by itself)")
    return {
        "machines": machines,
        "security_group": security_group,
        "strangers": strangers,
        "token": token,
        "public_token": public_token,
        "nothing": not removes,
        "summary": summary,
        "left": left,
    }


def scale_summary(plan: Mapping[str, Any], cluster_name: str) -> str:
    """The sentence scale prints before acting."""
    if plan.get("action") == "grow":
        what = f"start {plan.get('add')} more"
    elif plan.get("action") == "shrink":
        what = f"terminate {', '.join(plan.get('remove') or [])} (not etcd members, newest first)"
    else:
        what = "nothing to do"
    return f"Scale cluster {cluster_name} from {plan.get('current')} to {plan.get('target')} machines: {what}"


def change_message(action: str, cluster_name: str, changed: bool, states: Sequence[str], goal: str,
                   check_mode: bool = False) -> str:
    """The sentence start, stop, terminate and scale end with."""
    head = f"{action} on cluster {cluster_name}:"
    if not changed:
        return f"{head} nothing to do, every machine is already {goal}"
    if check_mode:
        return f"{head} check mode, machines would become {goal}"
    return f"{head} machines now {', '.join(states) or 'gone'}"


def cleanup_message(cluster_name: str, changed: bool, left: Sequence[str], check_mode: bool = False,
                    orphan_tokens: int = 0) -> str:
    """The sentence cleanup ends with: what it did (changed: to the cluster itself), the orphaned tokens it deleted,
    and what stays behind and why."""
    text = ("Check mode: " if check_mode else "") + (
        f"cleaned up cluster {cluster_name}" if changed else f"nothing to clean up for cluster {cluster_name}")
    if orphan_tokens:
        text += (f"; {'would delete' if check_mode else 'deleted'} {orphan_tokens} orphaned discovery"
                 f" token{'s' if orphan_tokens != 1 else ''} of clusters that no longer exist")
    return text + (f". Left: {'; '.join(left)}" if left else "")


def fleet_view(probed: bool, fleet: Any, via: Sequence[str]) -> Dict[str, Any]:
    """What inspect reports of fleet: {} without probes, why it could not be read, or what fleet_info read through
    the first machine that answered."""
    if not probed:
        return {}
    fleet = fleet if isinstance(fleet, Mapping) else {}
    if fleet.get("skipped") or not fleet:
        return {"error": "no machine answered over SSH"}
    if fleet.get("failed") or fleet.get("unreachable") or "machines" not in fleet:
        return {"error": fleet.get("msg") or "unreachable"}
    return {"via": via[0] if via else "", "machines": fleet["machines"], "unit_files": fleet.get("unit_files") or []}
