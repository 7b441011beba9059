from __future__ import annotations

import copy
import json

import pytest

from ansible.module_utils import _internal as ansible_internal
from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _ops as o
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError


def row(instance_id, private_ip, launch_time, state="running", **extra):
    """A machine row as _cluster.instance_row makes it."""
    base = {
        "id": instance_id, "state": state, "instance_type": "t3.small", "availability_zone": "us-east-1a",
        "private_ip": private_ip, "public_ip": "", "public_dns_name": "", "launch_time": launch_time,
        "volume_id": "", "volume_status": "", "subnet_id": "", "lifecycle": "on-demand",
    }
    base.update(extra)
    return base


# Five machines launched in order a..e; a, b, c boot first and are the etcd members of a size-3 token.
FIVE = [row(f"i-0{c}", f"10.0.0.{n}", f"2024-05-0{n}T10:00:00+00:00") for n, c in enumerate("abcde", 1)]


# ---------------------------------------------------------------------------------------------------
# state_counts


@pytest.mark.parametrize("rows,expected", [
    ([], {}),
    (None, {}),
    (FIVE, {"running": 5}),
    ([row("i-1", "", "", state="stopped"), row("i-2", "", ""), row("i-3", "", "", state="pending"), row("i-4", "", "")],
     {"pending": 1, "running": 2, "stopped": 1}),
    ([row("i-1", "", "", state="")], {"unknown": 1}),
])
def test_state_counts(rows, expected):
    counts = o.state_counts(rows)
    assert counts == expected
    assert list(counts) == sorted(counts)


@pytest.mark.parametrize("rows,message", [
    ("i-1", "must be a list of machine rows"),
    ({"id": "i-1"}, "must be a list of machine rows"),
    ([{"state": "running"}], r"rows\[0\] is not a machine row"),
    (["i-1"], r"rows\[0\] is not a machine row"),
])
def test_state_counts_rejects_what_is_not_rows(rows, message):
    with pytest.raises(ValidationError, match=message):
        o.state_counts(rows)


# ---------------------------------------------------------------------------------------------------
# mask_url


@pytest.mark.parametrize("url,expected", [
    ("https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de", "https://discovery.etcd.io/3e86…(masked)"),
    ("http://127.0.0.1:4001/v2/keys/_etcd/registry/6b0985cecfe542ae8d9a39d2b3017f7e",
     "http://127.0.0.1:4001/v2/keys/_etcd/registry/6b09…(masked)"),
    ("http://10.0.0.5:2379/v2/keys/_etcd/registry/6b0985cecfe542ae8d9a39d2b3017f7e/",
     "http://10.0.0.5:2379/v2/keys/_etcd/registry/6b09…(masked)"),
    (" https://Discovery.etcd.io/3e86b599 ", "https://discovery.etcd.io/3e86…(masked)"),
    # Credentials, query and fragment could carry secrets too.
    ("https://user:pw@etcd.example.com/v2/keys/_etcd/registry/abcdef", "https://…(masked)@etcd.example.com/v2/keys/_etcd/registry/abcd…(masked)"),
    ("https://discovery.etcd.io/3e86b599?x=1", "https://discovery.etcd.io/3e86…(masked)?…(masked)"),
    ("http://[fd00::5]:2379/v2/keys/_etcd/registry/abcdef", "http://[fd00::5]:2379/v2/keys/_etcd/registry/abcd…(masked)"),
    # A short token never shows whole.
    ("https://discovery.etcd.io/abc", "https://discovery.etcd.io/ab…(masked)"),
    ("https://discovery.etcd.io/a", "https://discovery.etcd.io/…(masked)"),
    ("https://discovery.etcd.io", "https://discovery.etcd.io"),
    ("https://discovery.etcd.io/", "https://discovery.etcd.io"),
    # Not a URL (an etcd v3 token): all masked but the start.
    ("my-cluster-token-1", "my-c…(masked)"),
    ("ftp://host/abcdef", "ftp:…(masked)"),
    ("http://host:notaport/abcdef", "http…(masked)"),
    ("", ""),
    ("   ", ""),
    (None, ""),
])
def test_mask_url(url, expected):
    assert o.mask_url(url) == expected


def test_mask_url_rejects_non_strings():
    with pytest.raises(ValidationError, match="expects the discovery URL as a string"):
        o.mask_url(["https://discovery.etcd.io/abc"])


# ---------------------------------------------------------------------------------------------------
# discovery_members

# Captured from Debian's etcd 3.4.23 (--enable-v2) hosting a size-2 token, after two real etcd members
# bootstrapped through it (node2 advertises two peer URLs). etcd hides _config (keys starting with '_')
# from listings.
ETCD_V2_ANSWER = json.loads("""
{"action": "get",
 "node": {"key": "/_etcd/registry/6b0985cecfe542ae8d9a39d2b3017f7e", "dir": true,
  "nodes": [
   {"key": "/_etcd/registry/6b0985cecfe542ae8d9a39d2b3017f7e/2e59c2e164bbfd27",
    "value": "node2=http://127.0.0.1:36569,node2=http://127.0.0.1:58951", "modifiedIndex": 5, "createdIndex": 5},
   {"key": "/_etcd/registry/6b0985cecfe542ae8d9a39d2b3017f7e/1cbc924a39722527",
    "value": "node1=http://127.0.0.1:36235", "modifiedIndex": 6, "createdIndex": 6}],
  "modifiedIndex": 4, "createdIndex": 4}}
""")
ETCD_V2_MEMBERS = [
    {"id": "2e59c2e164bbfd27", "name": "node2", "peer_urls": ["http://127.0.0.1:36569", "http://127.0.0.1:58951"],
     "ip": "127.0.0.1"},
    {"id": "1cbc924a39722527", "name": "node1", "peer_urls": ["http://127.0.0.1:36235"], "ip": "127.0.0.1"},
]
# Captured the same way: a GET of a token that does not exist.
ETCD_V2_NOT_FOUND = {"errorCode": 100, "message": "Key not found", "cause": "/_etcd/registry/nope", "index": 6}

TOKEN_DIR = "/_etcd/registry/3e86b59982e49066c5d813af1c2e2579"
# The public service's answer as its documentation shows it: the _config directory is listed, and
# registrations arrive in any order (createdIndex says which came first).
PUBLIC_ANSWER = {
    "action": "get",
    "node": {
        "key": TOKEN_DIR, "dir": True, "modifiedIndex": 10, "createdIndex": 10,
        "nodes": [
            {"key": f"{TOKEN_DIR}/_config", "dir": True, "modifiedIndex": 10, "createdIndex": 10},
            {"key": f"{TOKEN_DIR}/9f0f0f0f0f0f0f03", "value": "ip-10-0-0-7=http://10.0.0.7:2380",
             "modifiedIndex": 14, "createdIndex": 14},
            {"key": f"{TOKEN_DIR}/8e9e05c52164694d", "value": "node1=http://10.0.0.5:2380",
             "modifiedIndex": 12, "createdIndex": 12},
            {"key": f"{TOKEN_DIR}/1a2b3c4d5e6f7081", "value": "node2=http://10.0.0.6:2380,node2=https://10.0.0.6:2381",
             "modifiedIndex": 13, "createdIndex": 13},
        ],
    },
}
PUBLIC_MEMBERS = [
    {"id": "8e9e05c52164694d", "name": "node1", "peer_urls": ["http://10.0.0.5:2380"], "ip": "10.0.0.5"},
    {"id": "1a2b3c4d5e6f7081", "name": "node2", "peer_urls": ["http://10.0.0.6:2380", "https://10.0.0.6:2381"],
     "ip": "10.0.0.6"},
    {"id": "9f0f0f0f0f0f0f03", "name": "ip-10-0-0-7", "peer_urls": ["http://10.0.0.7:2380"], "ip": "10.0.0.7"},
]


def _with_nodes(*nodes):
    answer = copy.deepcopy(PUBLIC_ANSWER)
    answer["node"]["nodes"] = list(nodes)
    return answer


GOOD = {"key": f"{TOKEN_DIR}/8e9e05c52164694d", "value": "node1=http://10.0.0.5:2380", "createdIndex": 12}
NODE1 = [PUBLIC_MEMBERS[0]]


@pytest.mark.parametrize("registry,expected", [
    (ETCD_V2_ANSWER, ETCD_V2_MEMBERS),
    (json.dumps(ETCD_V2_ANSWER), ETCD_V2_MEMBERS),
    (ETCD_V2_ANSWER["node"], ETCD_V2_MEMBERS),
    (ETCD_V2_ANSWER["node"]["nodes"], ETCD_V2_MEMBERS),
    (PUBLIC_ANSWER, PUBLIC_MEMBERS),
    # Before anyone registered the directory has no nodes key at all.
    ({"action": "get", "node": {"key": TOKEN_DIR, "dir": True}}, []),
    (ETCD_V2_NOT_FOUND, []),
    (None, []),
    ("", []),
    ([], []),
    # Malformed entries are skipped, the good one stays.
    (_with_nodes({"key": f"{TOKEN_DIR}/_config", "value": "x=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/not-a-member-id", "value": "n=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/0123456789abcdef0", "value": "n=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "n=10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "n=http://:2380"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "n=http://10.0.0.9:port"}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "a=http://10.0.0.9:2380,b=http://10.0.0.8:2380"},
                 GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": ""}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": 5}, GOOD), NODE1),
    (_with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "dir": True, "value": "n=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes({"value": "n=http://10.0.0.9:2380"}, GOOD), NODE1),
    (_with_nodes("n=http://10.0.0.9:2380", None, 7, GOOD), NODE1),
    # The same member twice (a retried registration seen through a proxy) counts once.
    (_with_nodes(GOOD, dict(GOOD, createdIndex=20)), NODE1),
    ({"action": "get", "node": {"key": TOKEN_DIR, "dir": True, "nodes": "garbage"}}, []),
    ({"action": "get", "node": "garbage"}, []),
])
def test_discovery_members(registry, expected):
    assert o.discovery_members(registry) == expected


def test_discovery_members_keep_host_names_without_ip():
    answer = _with_nodes({"key": f"{TOKEN_DIR}/00000000000000aa", "value": "core-1=http://core-1.internal:2380"})
    assert o.discovery_members(answer) == [
        {"id": "00000000000000aa", "name": "core-1", "peer_urls": ["http://core-1.internal:2380"], "ip": ""},
    ]


def test_discovery_members_cut_to_the_token_size_when_the_answer_carries_it():
    # A recursive answer that includes _config/size: registrations beyond the size became proxies
    # (etcd's checkCluster returns nodes[:size] and ErrFullCluster to the late ones).
    answer = copy.deepcopy(PUBLIC_ANSWER)
    answer["node"]["nodes"][0]["nodes"] = [{"key": f"{TOKEN_DIR}/_config/size", "value": "2", "createdIndex": 11}]
    assert o.discovery_members(answer) == PUBLIC_MEMBERS[:2]


@pytest.mark.parametrize("registry,message", [
    ("{not json", "is not JSON"),
    (42, "must be the JSON answer of the discovery URL"),
])
def test_discovery_members_reject_what_is_no_answer(registry, message):
    with pytest.raises(ValidationError, match=message):
        o.discovery_members(registry)


# ---------------------------------------------------------------------------------------------------
# scale_plan


def ids(letters):
    return [f"i-0{c}" for c in letters]


@pytest.mark.parametrize("rows,target,token,member_ips,expected", [
    # Nothing to do.
    (FIVE, 5, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     {"action": "none", "current": 5, "target": 5, "add": 0, "remove": [], "members": ids("abc")}),
    # Grow: the new machines will be proxies of the full token.
    (FIVE, 8, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     {"action": "grow", "current": 5, "target": 8, "add": 3, "remove": [], "members": ids("abc")}),
    (FIVE[:1], 3, 3, [],
     {"action": "grow", "current": 1, "target": 3, "add": 2, "remove": [], "members": ids("a")}),
    ([], 3, 3, None,
     {"action": "grow", "current": 0, "target": 3, "add": 3, "remove": [], "members": []}),
    # Shrink: the newest proxies go first, members stay.
    (FIVE, 3, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
    (FIVE, 4, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     {"action": "shrink", "current": 5, "target": 4, "add": 0, "remove": ids("e"), "members": ids("abc")}),
    # Members need not be the oldest: the registry wins over age.
    (FIVE, 3, 3, ["10.0.0.3", "10.0.0.4", "10.0.0.5"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ba"), "members": ids("cde")}),
    # The discovery_members list works as member_ips.
    (FIVE, 3, 3, [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": ""}, {}],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
    # Partial registry (one member registered so far): the oldest others are protected until 3 are.
    (FIVE, 4, 3, ["10.0.0.5"],
     {"action": "shrink", "current": 5, "target": 4, "add": 0, "remove": ids("d"), "members": ids("abe")}),
    (FIVE, 3, 3, ["10.0.0.2", "10.0.0.3"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
    # Registry unknown: the 3 oldest are assumed to be the members.
    (FIVE, 3, 3, None,
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
    # Registry names addresses of no machine (host names, public IPs): nobody protected by it, the oldest are.
    (FIVE, 3, 3, ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
    # More registered than the token size (a registration race): all of them stay protected.
    (FIVE, 3, 1, ["10.0.0.1", "10.0.0.4"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ec"), "members": ids("ad")}),
    # Ties in launch time are broken by id, descending for removal.
    ([row("i-0b", "10.0.0.2", "2024-05-01"), row("i-0a", "10.0.0.1", "2024-05-01"), row("i-0c", "10.0.0.3", "2024-05-01")],
     2, 1, ["10.0.0.1"],
     {"action": "shrink", "current": 3, "target": 2, "add": 0, "remove": ids("c"), "members": ids("a")}),
    # Terminated and shutting-down machines are not live: they neither count nor get removed.
    (FIVE + [row("i-0f", "10.0.0.6", "2024-05-09", state="terminated"),
             row("i-0g", "10.0.0.7", "2024-05-09", state="shutting-down")], 5, 3, [],
     {"action": "none", "current": 5, "target": 5, "add": 0, "remove": [], "members": ids("abc")}),
    # A stopped member is still a member; a stopped proxy goes like any other by age.
    ([row("i-0a", "10.0.0.1", "2024-05-01", state="stopped"), row("i-0b", "10.0.0.2", "2024-05-02"),
      row("i-0c", "10.0.0.3", "2024-05-03", state="stopped")], 2, 1, ["10.0.0.1"],
     {"action": "shrink", "current": 3, "target": 2, "add": 0, "remove": ids("c"), "members": ids("a")}),
    # Digit strings as `-e cluster_size=3` gives them.
    (FIVE, "3", "3", ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     {"action": "shrink", "current": 5, "target": 3, "add": 0, "remove": ids("ed"), "members": ids("abc")}),
])
def test_scale_plan(rows, target, token, member_ips, expected):
    plan = o.scale_plan(rows, target, token, member_ips)
    reason = plan.pop("reason")
    assert plan == expected
    assert reason and reason.endswith(".")


@pytest.mark.parametrize("member_ips,reason", [
    (["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     "Removing the 2 newest proxies i-0e, i-0d to shrink from 5 to 3; the etcd members i-0a, i-0b, i-0c stay "
     "(as registered in discovery)."),
    (["10.0.0.2"],
     "Removing the 2 newest proxies i-0e, i-0d to shrink from 5 to 3; the etcd members i-0a, i-0b, i-0c stay "
     "(1 registered in discovery; the 2 oldest other machines assumed, as members register first)."),
    (["10.0.0.2", "10.0.0.3"],
     "Removing the 2 newest proxies i-0e, i-0d to shrink from 5 to 3; the etcd members i-0a, i-0b, i-0c stay "
     "(2 registered in discovery; the oldest other machine assumed, as members register first)."),
])
def test_scale_plan_reason_says_how_members_were_found(member_ips, reason):
    assert o.scale_plan(FIVE, 3, 3, member_ips)["reason"] == reason


def test_scale_plan_reasons_for_grow_and_none():
    assert o.scale_plan(FIVE, 6, 3, [])["reason"] == (
        "Adding 1 machine to grow from 5 to 6; machines beyond the discovery token size 3 join etcd as proxies."
    )
    assert o.scale_plan(FIVE, 5, 3, [])["reason"] == "The cluster already has 5 machines, the target size."
    assert o.scale_plan(FIVE, 4, 3, [])["reason"].startswith("Removing the newest proxy i-0e to shrink from 5 to 4;")


@pytest.mark.parametrize("rows,target,token,member_ips,message", [
    (FIVE, 2, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
     "Refusing to scale cluster down to 2: machines i-0a, i-0b, i-0c are etcd members (the discovery token has "
     "size 3; as registered in discovery); removing a member breaks etcd's quorum. Only the 2 proxies can be "
     "removed, so the smallest size is 3."),
    # The registry's members are not the oldest: the message names them, not the oldest.
    (FIVE, 1, 3, ["10.0.0.3", "10.0.0.4", "10.0.0.5"],
     "Refusing to scale cluster down to 1: machines i-0c, i-0d, i-0e are etcd members (the discovery token has "
     "size 3; as registered in discovery); removing a member breaks etcd's quorum. Only the 2 proxies can be "
     "removed, so the smallest size is 3."),
    # Partial registry: the guess is spelled out.
    (FIVE[:4], 2, 3, ["10.0.0.4"],
     "Refusing to scale cluster down to 2: machines i-0a, i-0b, i-0d are etcd members (the discovery token has "
     "size 3; 1 registered in discovery; the 2 oldest other machines assumed, as members register first); "
     "removing a member breaks etcd's quorum. Only the 1 proxy can be removed, so the smallest size is 3."),
    (FIVE[:3], 2, 3, None,
     "Refusing to scale cluster down to 2: machines i-0a, i-0b, i-0c are etcd members (the discovery token has "
     "size 3; none registered in discovery, so the 3 oldest machines assumed, as members register first); "
     "removing a member breaks etcd's quorum. No machine is a proxy, so the smallest size is 3."),
    (FIVE[:2], 1, 3, ["192.0.2.1"],
     "Refusing to scale cluster down to 1: machines i-0a, i-0b are etcd members (the discovery token has size 3; "
     "discovery names no address of these machines, so the 2 oldest machines assumed, as members register "
     "first); removing a member breaks etcd's quorum. No machine is a proxy, so the smallest size is 2."),
])
def test_scale_plan_refuses_to_remove_members(rows, target, token, member_ips, message):
    with pytest.raises(ClusterError) as info:
        o.scale_plan(rows, target, token, member_ips)
    assert info.value.msg == message
    assert not isinstance(info.value, ValidationError)


def test_scale_plan_does_not_match_machines_without_an_address():
    # A pending machine may have no private IP yet; an empty registry IP must not make it a member.
    rows = [row("i-0a", "10.0.0.1", "2024-05-01"), row("i-0b", "", "2024-05-02", state="pending")]
    plan = o.scale_plan(rows, 1, 1, ["10.0.0.1", ""])
    assert (plan["members"], plan["remove"]) == (ids("a"), ids("b"))


@pytest.mark.parametrize("target,token,member_ips,message", [
    (0, 3, [], "target_size must be at least 1, got 0"),
    (-2, 3, [], "target_size must be at least 1, got -2"),
    ("three", 3, [], "target_size must be a whole number"),
    (2.0, 3, [], "target_size must be a whole number"),
    (True, 3, [], "target_size must be a whole number"),
    (None, 3, [], "target_size must be a whole number"),
    (3, 0, [], "token_size must be at least 1"),
    (3, None, [], "token_size must be a whole number"),
    (3, 3, "10.0.0.1", "member_ips must be a list"),
    (3, 3, {"ip": "10.0.0.1"}, "member_ips must be a list"),
])
def test_scale_plan_rejects_bad_input(target, token, member_ips, message):
    with pytest.raises(ValidationError, match=message):
        o.scale_plan(FIVE, target, token, member_ips)


# ---------------------------------------------------------------------------------------------------
# inspect_table

# One item of amazon.aws.ec2_security_group_info's security_groups, as the launch role's rules create it.
SECURITY_GROUP = {
    "group_id": "sg-0123", "group_name": "coreos-ec2-demo", "description": "coreos_ec2.cluster demo",
    "vpc_id": "vpc-1",
    "ip_permissions": [
        {"ip_protocol": "udp", "from_port": 8472, "to_port": 8472, "ip_ranges": [], "ipv6_ranges": [],
         "prefix_list_ids": [], "user_id_group_pairs": [{"group_id": "sg-0123", "user_id": "123456789012"}]},
        {"ip_protocol": "tcp", "from_port": 2379, "to_port": 2380, "ip_ranges": [], "ipv6_ranges": [],
         "prefix_list_ids": [], "user_id_group_pairs": [{"group_id": "sg-0123", "user_id": "123456789012"}]},
        {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "ip_ranges": [{"cidr_ip": "203.0.113.0/24",
         "description": "SSH"}], "ipv6_ranges": [{"cidr_ipv6": "2001:db8::/32"}], "prefix_list_ids": [],
         "user_id_group_pairs": []},
    ],
    "ip_permissions_egress": [{"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}],
}
TWO = [
    row("i-0b2", "10.0.0.6", "2024-05-02T10:00:00+00:00", state="stopped", instance_type="t3.medium",
        availability_zone="us-east-1b", lifecycle="spot"),
    row("i-0a1", "10.0.0.5", "2024-05-01T10:00:00+00:00", public_dns_name="ec2-198-51-100-7.compute-1.amazonaws.com",
        public_ip="198.51.100.7", volume_id="vol-0aa", volume_status="attached", volume_size=100),
]
PROBES = {
    "i-0a1": {"reachable": True, "etcd": "healthy (member 8e9e05c52164694d)", "fleet": "2 machines", "error": ""},
    "i-0b2": {"reachable": False, "etcd": "", "fleet": "", "error": "ssh: connect to host 10.0.0.6 port 22:\n Connection timed out"},
}
DISCOVERY_URL = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"

EXPECTED_REPORT = """\
Cluster: 2 machines (1 running, 1 stopped)

INSTANCE  STATE    TYPE       ZONE        LIFECYCLE  PRIVATE IP  PUBLIC DNS                                \
LAUNCHED                   VOLUME   SIZE     VOLUME STATE
i-0a1     running  t3.small   us-east-1a  on-demand  10.0.0.5    ec2-198-51-100-7.compute-1.amazonaws.com  \
2024-05-01T10:00:00+00:00  vol-0aa  100 GiB  attached
i-0b2     stopped  t3.medium  us-east-1b  spot       10.0.0.6    -                                         \
2024-05-02T10:00:00+00:00  -        -        -

Security group: sg-0123 (coreos-ec2-demo)
  tcp 22 from 2001:db8::/32
  tcp 22 from 203.0.113.0/24
  tcp 2379-2380 from sg-0123 (this group)
  udp 8472 from sg-0123 (this group)

Discovery: https://discovery.etcd.io/3e86…(masked)

Probes:
  i-0a1  etcd: healthy (member 8e9e05c52164694d), fleet: 2 machines
  i-0b2  unreachable: ssh: connect to host 10.0.0.6 port 22: Connection timed out"""


def test_inspect_table_two_machines_one_unreachable():
    report = o.inspect_table(TWO, SECURITY_GROUP, DISCOVERY_URL, PROBES)
    assert report == EXPECTED_REPORT
    assert all(line == line.rstrip() for line in report.splitlines())
    assert "3e86b59982e4" not in report


def test_inspect_table_without_probes_group_or_discovery():
    report = o.inspect_table(TWO[1:], None, "", None)
    assert report == (
        "Cluster: 1 machine (1 running)\n"
        "\n"
        "INSTANCE  STATE    TYPE      ZONE        LIFECYCLE  PRIVATE IP  PUBLIC DNS                                "
        "LAUNCHED                   VOLUME   SIZE     VOLUME STATE\n"
        "i-0a1     running  t3.small  us-east-1a  on-demand  10.0.0.5    ec2-198-51-100-7.compute-1.amazonaws.com  "
        "2024-05-01T10:00:00+00:00  vol-0aa  100 GiB  attached\n"
        "\n"
        "Security group: not found\n"
        "\n"
        "Discovery: not found\n"
        "\n"
        "Probes:\n"
        "  i-0a1  not probed"
    )


def test_inspect_table_empty_cluster():
    assert o.inspect_table([], {"group_id": "sg-1", "group_name": "g", "ip_permissions": []}, None, {}) == (
        "Cluster: 0 machines\n\nNo machines found.\n\nSecurity group: sg-1 (g)\n  no ingress rules\n\nDiscovery: not found"
    )


def test_inspect_table_fills_missing_keys_and_falls_back_to_the_public_ip():
    rows = [{"id": "i-1", "state": "pending", "public_ip": "198.51.100.9"}]
    lines = o.inspect_table(rows, None, "", {}).splitlines()
    assert lines[2:4] == [
        "INSTANCE  STATE    TYPE  ZONE  LIFECYCLE  PRIVATE IP  PUBLIC DNS    LAUNCHED  VOLUME  SIZE  VOLUME STATE",
        "i-1       pending  -     -     -          -           198.51.100.9  -         -       -     -",
    ]


@pytest.mark.parametrize("permission,lines", [
    ({"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "10.1.0.0/16"}]}, ["all from 10.1.0.0/16"]),
    ({"ip_protocol": "tcp", "from_port": 0, "to_port": 65535, "user_id_group_pairs": [{"group_id": "sg-other"}]},
     ["tcp 0-65535 from sg-other"]),
    ({"ip_protocol": "icmp", "from_port": 8, "to_port": -1, "ip_ranges": [{"cidr_ip": "10.1.0.0/16"}]},
     ["icmp type 8 from 10.1.0.0/16"]),
    ({"ip_protocol": "icmp", "from_port": 3, "to_port": 4, "ip_ranges": [{"cidr_ip": "10.1.0.0/16"}]},
     ["icmp type 3 code 4 from 10.1.0.0/16"]),
    ({"ip_protocol": "icmp", "from_port": -1, "to_port": -1, "ip_ranges": [{"cidr_ip": "10.1.0.0/16"}]},
     ["icmp from 10.1.0.0/16"]),
    ({"ip_protocol": "50", "prefix_list_ids": [{"prefix_list_id": "pl-1"}]}, ["protocol 50 from pl-1"]),
    ({"ip_protocol": "tcp", "from_port": 22, "to_port": 22}, ["tcp 22 from nowhere"]),
    ({"ip_protocol": "udp", "from_port": 8285, "to_port": 8285,
      "user_id_group_pairs": [{"group_id": "sg-1"}, {"group_id": "sg-0"}]},
     ["udp 8285 from sg-0", "udp 8285 from sg-1 (this group)"]),
])
def test_inspect_table_rule_lines(permission, lines):
    group = {"group_id": "sg-1", "group_name": "g", "ip_permissions": [permission]}
    report = o.inspect_table([], group, "", None)
    rules = report.split("Security group: sg-1 (g)\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert rules == [f"  {line}" for line in lines]


def test_inspect_table_accepts_the_whole_info_result():
    result = {"changed": False, "security_groups": [SECURITY_GROUP]}
    assert o.inspect_table(TWO, result, DISCOVERY_URL, PROBES) == EXPECTED_REPORT


@pytest.mark.parametrize("probe,text", [
    ({"reachable": True, "etcd": "healthy", "fleet": "", "error": ""}, "etcd: healthy, fleet: -"),
    ({"reachable": True, "etcd": "unhealthy", "fleet": "fleetctl failed", "error": "exit 1"},
     "etcd: unhealthy, fleet: fleetctl failed, error: exit 1"),
    ({"reachable": False, "error": ""}, "unreachable: no reason given"),
    ({"error": "Permission denied (publickey)"}, "unreachable: Permission denied (publickey)"),
    ({"etcd": "healthy"}, "etcd: healthy, fleet: -"),
    ("garbage", "not probed"),
])
def test_inspect_table_probe_lines(probe, text):
    report = o.inspect_table([row("i-1", "10.0.0.1", "t")], None, "", {"i-1": probe})
    assert report.splitlines()[-1] == f"  i-1  {text}"


@pytest.mark.parametrize("args,message", [
    (("i-1", None, "", None), "must be a list of machine rows"),
    ((TWO, "sg-0123", "", None), "security_group must be a group"),
    ((TWO, None, "", ["i-0a1"]), "probes must be a dict"),
    ((TWO, None, 5, None), "expects the discovery URL as a string"),
])
def test_inspect_table_rejects_bad_input(args, message):
    with pytest.raises(ValidationError, match=message):
        o.inspect_table(*args)


# ---------------------------------------------------------------------------------------------------
# The filter plugin


@pytest.fixture
def filter_plugin(monkeypatch):
    """The filter plugin module, imported here rather than at the top of the file.

    It imports ansible.errors, controller code whose import sets ansible.module_utils._internal.is_controller
    for the whole process; from then on AnsibleModule.warn() goes to the controller's display instead of the
    module result, which the module tests in the same pytest run read. monkeypatch restores the flag.
    """
    monkeypatch.setattr(ansible_internal, "is_controller", ansible_internal.is_controller)
    from ansible_collections.coreos_ec2.cluster.plugins.filter import ops as plugin

    return plugin


def test_filters_are_the_helpers(filter_plugin):
    filters = filter_plugin.FilterModule().filters()
    assert sorted(filters) == [
        "ops_change_message", "ops_cleanup_message", "ops_cleanup_plan", "ops_discovery_members", "ops_fleet_view",
        "ops_foreign_instances", "ops_inspect_table", "ops_mask_url", "ops_scale_placement", "ops_scale_plan",
        "ops_scale_summary",
        "ops_state_counts",
    ]
    assert filters["ops_state_counts"](FIVE) == {"running": 5}
    assert filters["ops_mask_url"](DISCOVERY_URL) == "https://discovery.etcd.io/3e86…(masked)"
    assert filters["ops_discovery_members"](PUBLIC_ANSWER) == PUBLIC_MEMBERS
    # Only 10.0.0.5 (i-0e) is in that registry; the two oldest fill the token's size.
    assert filters["ops_scale_plan"](FIVE, 3, 3, PUBLIC_MEMBERS)["remove"] == ids("dc")
    assert filters["ops_inspect_table"](TWO, SECURITY_GROUP, DISCOVERY_URL, PROBES) == EXPECTED_REPORT


def test_filters_report_helper_errors_as_filter_errors(filter_plugin):
    filters = filter_plugin.FilterModule().filters()
    with pytest.raises(filter_plugin.AnsibleFilterError, match="Refusing to scale cluster down to 1"):
        filters["ops_scale_plan"](FIVE, 1, 3, [])
    with pytest.raises(filter_plugin.AnsibleFilterError, match="target_size must be at least 1"):
        filters["ops_scale_plan"](FIVE, 0, 3, [])


def test_foreign_instances_are_the_machines_without_this_clusters_tag():
    machines = [
        {"instance_id": "i-mine", "tags": {"coreos-ec2-cluster": "p-1", "Name": "p-1"}},
        {"instance_id": "i-other", "tags": {"coreos-ec2-cluster": "p-2"}},
        {"instance_id": "i-untagged", "tags": {}},
        {"instance_id": "i-b-no-tags"},
        {"instance_id": "i-a-prefix", "tags": {"coreos-ec2-cluster": "p-10"}},
    ]
    assert o.foreign_instances(machines, "coreos-ec2-cluster", "p-1") == [
        "i-a-prefix", "i-b-no-tags", "i-other", "i-untagged"]
    assert o.foreign_instances(machines[:1], "coreos-ec2-cluster", "p-1") == []
    assert o.foreign_instances([], "coreos-ec2-cluster", "p-1") == []


@pytest.mark.parametrize("machines", [None, "i-1", [{"id": "i-1"}], ["i-1"]])
def test_foreign_instances_rejects_what_is_not_a_machine_list(machines):
    with pytest.raises(ValidationError, match="instance"):
        o.foreign_instances(machines, "coreos-ec2-cluster", "p-1")


FLEET = {
    "via": "i-0a",
    "machines": [{"machine": "m1", "ip": "10.0.0.5", "metadata": {}}, {"machine": "m2", "ip": "10.0.0.6", "metadata": {}}],
    "unit_files": [
        {"unit": "web@.service", "hash": "1c6fb6f", "dstate": "inactive", "state": "inactive", "target": None,
         "target_ip": None, "global": False},
        {"unit": "web@1.service", "hash": "1c6fb6f", "dstate": "launched", "state": "launched", "target": "m1",
         "target_ip": "10.0.0.5", "global": False},
        {"unit": "agent.service", "hash": "aaaaaaa", "dstate": "launched", "state": None, "target": None,
         "target_ip": None, "global": True},
    ],
}


def test_inspect_table_ends_with_fleets_units():
    report = o.inspect_table(TWO, SECURITY_GROUP, DISCOVERY_URL, PROBES, FLEET)
    assert report.startswith(EXPECTED_REPORT)
    assert report[len(EXPECTED_REPORT):] == (
        "\n\nFleet: 2 machines, 3 units (read through i-0a)\n"
        "  UNIT           DSTATE    STATE     MACHINE\n"
        "  web@.service   inactive  inactive  -\n"
        "  web@1.service  launched  launched  10.0.0.5\n"
        "  agent.service  launched  -         global")


def test_inspect_table_says_why_fleet_was_not_read():
    report = o.inspect_table(TWO, SECURITY_GROUP, DISCOVERY_URL, PROBES, {"error": "no machine answered over SSH"})
    assert report.endswith("\n\nFleet: not read (no machine answered over SSH)")
    assert o.inspect_table(TWO, SECURITY_GROUP, DISCOVERY_URL, PROBES, {}) == EXPECTED_REPORT


def test_inspect_table_shows_what_the_probe_found_per_machine():
    probes = {"i-0a": {"reachable": True, "etcd": "cluster is healthy", "fleet": "m1 10.0.0.1", "error": "",
                       "members": "a1: name=m1\nb2: name=m2", "flannel": '{"Network": "10.1.0.0/16"}\nFLANNEL_SUBNET=10.1.9.1/24',
                       "ebs": "/dev/xvdb ext4 /media/ebs", "failed": ""}}
    rows = [{"id": "i-0a", "state": "running", "launch_time": "2024-01-01"}]
    lines = o.inspect_table(rows, None, "", probes).splitlines()
    start = lines.index("Probes:")
    assert lines[start + 1].startswith("  i-0a  etcd: cluster is healthy, fleet: m1 10.0.0.1")
    assert lines[start + 2:start + 8] == [
        "    etcd members: a1: name=m1",
        "                  b2: name=m2",
        '    flannel: {"Network": "10.1.0.0/16"}',
        "             FLANNEL_SUBNET=10.1.9.1/24",
        "    /media/ebs: /dev/xvdb ext4 /media/ebs",
        "    failed units: none",
    ]


@pytest.mark.parametrize("extra, line", [
    ({"failed": "broken.service loaded failed failed"}, "    failed units: broken.service loaded failed failed"),
    ({"ebs": ""}, "    /media/ebs: not mounted"),
])
def test_inspect_table_probe_details_table(extra, line):
    probe = dict({"reachable": True, "etcd": "x", "fleet": "y", "error": ""}, **extra)
    lines = o.inspect_table([{"id": "i-0a", "state": "running"}], None, "", {"i-0a": probe}).splitlines()
    assert line in lines


def test_inspect_table_unreachable_machines_get_no_details():
    probe = {"reachable": False, "error": "no node behind it on the sandbox (x)", "members": "a1"}
    lines = o.inspect_table([{"id": "i-0a", "state": "running"}], None, "", {"i-0a": probe}).splitlines()
    assert "  i-0a  unreachable: no node behind it on the sandbox (x)" in lines
    assert not any("etcd members" in line for line in lines)


CLEANUP_ROWS = [{"id": "i-1", "state": "running", "launch_time": "1"}, {"id": "i-2", "state": "stopped", "launch_time": "2"}]
GROUP = [{"group_id": "sg-1", "group_name": "coreos-ec2-p", "ip_permissions": []}]
V2_TOKEN = {"protocol": "etcd_v2", "exists": True, "deletable": True}


@pytest.mark.parametrize("rows, groups, foreign, token, expected", [
    (CLEANUP_ROWS, GROUP, [], V2_TOKEN,
     {"machines": ["i-1", "i-2"], "security_group": "sg-1", "token": True, "public_token": False, "nothing": False,
      "summary": "Cleanup of cluster p removes: machines i-1, i-2; security group sg-1; the self-hosted discovery token.",
      "left": []}),
    # A token that could not be read stays in the plan, so its delete names the service that failed.
    ([], [], [], {"protocol": "etcd_v2", "exists": None, "deletable": True, "msg": "unreachable"},
     {"machines": [], "security_group": "", "token": True, "nothing": False}),
    # Gone already: a second cleanup has nothing to do.
    ([], [], [], {"protocol": "etcd_v2", "exists": False, "deletable": True},
     {"token": False, "nothing": True, "summary": "Nothing to clean up for cluster p.", "left": []}),
    ([], [], [], {}, {"token": False, "public_token": False, "nothing": True}),
    # A public token cannot be deleted: it is said to stay.
    (CLEANUP_ROWS, [], [], {"protocol": "public", "exists": True, "deletable": False},
     {"token": False, "public_token": True,
      "left": ["the public discovery token (the public service offers no delete; it expires by itself)"]}),
    # Strangers in the group: the group stays, and the plan says why.
    (CLEANUP_ROWS, GROUP, ["i-9", "i-8"], {},
     {"security_group": "", "strangers": ["i-8", "i-9"],
      "summary": "Cleanup of cluster p removes: machines i-1, i-2. It keeps security group sg-1: machines outside the "
                 "cluster still use it (i-8, i-9).",
      "left": ["security group sg-1 (still used by i-8, i-9, which are not part of the cluster; move or terminate "
               "them, then run cleanup again)"]}),
])
def test_cleanup_plan(rows, groups, foreign, token, expected):
    plan = o.cleanup_plan(rows, groups, foreign, token, "p")
    assert {key: plan[key] for key in expected} == expected


@pytest.mark.parametrize("plan, expected", [
    ({"action": "grow", "current": 3, "target": 5, "add": 2}, "Scale cluster p from 3 to 5 machines: start 2 more"),
    ({"action": "shrink", "current": 5, "target": 3, "remove": ["i-5", "i-4"]},
     "Scale cluster p from 5 to 3 machines: terminate i-5, i-4 (not etcd members, newest first)"),
    ({"action": "none", "current": 3, "target": 3}, "Scale cluster p from 3 to 3 machines: nothing to do"),
])
def test_scale_summary(plan, expected):
    assert o.scale_summary(plan, "p") == expected


@pytest.mark.parametrize("changed, states, check, expected", [
    (False, ["stopped"], False, "stop on cluster p: nothing to do, every machine is already stopped"),
    (True, [], True, "stop on cluster p: check mode, machines would become stopped"),
    (True, ["stopped", "stopped"], False, "stop on cluster p: machines now stopped, stopped"),
    (True, [], False, "stop on cluster p: machines now gone"),
])
def test_change_message(changed, states, check, expected):
    assert o.change_message("stop", "p", changed, states, "stopped", check) == expected


@pytest.mark.parametrize("changed, left, check, expected", [
    (True, [], False, "cleaned up cluster p"),
    (False, [], False, "nothing to clean up for cluster p"),
    (True, ["a token", "a group"], True, "Check mode: cleaned up cluster p. Left: a token; a group"),
])
def test_cleanup_message(changed, left, check, expected):
    assert o.cleanup_message("p", changed, left, check) == expected


@pytest.mark.parametrize("probed, fleet, via, expected", [
    (False, {"machines": []}, ["i-1"], {}),
    (True, {"skipped": True}, [], {"error": "no machine answered over SSH"}),
    (True, {}, [], {"error": "no machine answered over SSH"}),
    (True, {"failed": True, "msg": "fleetctl was not found"}, ["i-1"], {"error": "fleetctl was not found"}),
    (True, {"unreachable": True}, ["i-1"], {"error": "unreachable"}),
    (True, {"machines": [{"machine": "m"}], "unit_files": [{"unit": "u"}]}, ["i-1", "i-2"],
     {"via": "i-1", "machines": [{"machine": "m"}], "unit_files": [{"unit": "u"}]}),
])
def test_fleet_view(probed, fleet, via, expected):
    assert o.fleet_view(probed, fleet, via) == expected


A, B = "subnet-0000000a", "subnet-0000000b"


def spread_rows():
    """Five machines over two subnets (a, c, e in A; b, d in B); a, b, c are the token's members."""
    return [dict(r, subnet_id=A if n % 2 == 0 else B, availability_zone="us-east-1a" if n % 2 == 0 else "us-east-1b")
            for n, r in enumerate(FIVE)]


def test_scale_placement_fills_the_emptiest_subnets():
    rows = spread_rows()
    assert o.scale_placement(rows, 8) == [
        {"subnet_id": A, "availability_zone": "us-east-1a", "count": 4, "new": 1},
        {"subnet_id": B, "availability_zone": "us-east-1b", "count": 4, "new": 2},
    ]
    # Only subnets that get machines; none without a subnet at all.
    assert o.scale_placement(rows, 6) == [{"subnet_id": B, "availability_zone": "us-east-1b", "count": 3, "new": 1}]
    assert o.scale_placement(FIVE, 7) == [{"subnet_id": "", "availability_zone": "", "count": 7, "new": 2}]


def test_scale_down_keeps_the_spread():
    # A has a, c, e; B has b, d; the proxies are d and e. Shrinking by one takes e, the newest, from the fuller A.
    plan = o.scale_plan(spread_rows(), 4, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert plan["remove"] == ["i-0e"]
    assert "newest proxy from the fullest zones i-0e" in plan["reason"]
    rows = spread_rows()
    # Make d the newest: it is in B, which has fewer machines, so e (in A, the fuller) still goes first.
    rows[3] = dict(rows[3], launch_time="2024-05-09T10:00:00+00:00")
    assert o.scale_plan(rows, 4, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"])["remove"] == ["i-0e"]
    assert o.scale_plan(rows, 3, 3, ["10.0.0.1", "10.0.0.2", "10.0.0.3"])["remove"] == ["i-0e", "i-0d"]
