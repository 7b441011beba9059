from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _cluster as c
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

REGIONS = ["us-east-1", "eu-west-1", "cn-north-1"]


@pytest.mark.parametrize("name", ["p-1", "demo", "A", "a" * 63, "prod-eu-2"])
def test_good_cluster_names(name):
    assert c.validate_cluster_name(name) == name


@pytest.mark.parametrize("name,message", [
    ("", "cluster_name is empty"),
    ("   ", "cluster_name is empty"),
    (None, "cluster_name is empty"),
    ("p_1", "not usable"),
    ("-p", "not usable"),
    ("p-", "not usable"),
    ("p 1", "not usable"),
    ("a" * 64, "not usable"),
    ("p,1", "not usable"),
    ("p=1", "not usable"),
])
def test_bad_cluster_names(name, message):
    with pytest.raises(ValidationError, match=message):
        c.validate_cluster_name(name)


@pytest.mark.parametrize("size,expected", [(1, 1), (3, 3), ("5", 5), (" 7 ", 7), (200, 200)])
def test_good_sizes(size, expected):
    assert c.validate_cluster_size(size) == expected


@pytest.mark.parametrize("size,message", [
    (0, "cluster_size 0 is out of range: allowed is 1 to 200"),
    (-1, "cluster_size -1 is out of range"),
    ("-3", "cluster_size -3 is out of range"),
    (201, "out of range"),
    ("three", "'three' is not an integer"),
    (2.5, "2.5 is not an integer"),
    (True, "True is not an integer"),
    (None, "None is not an integer"),
])
def test_bad_sizes(size, message):
    with pytest.raises(ValidationError, match=message):
        c.validate_cluster_size(size)


def test_size_cap_is_configurable():
    assert c.validate_cluster_size(300, size_max=500) == 300
    with pytest.raises(ValidationError, match="allowed is 1 to 2"):
        c.validate_cluster_size(3, size_max=2)


def test_known_regions_come_from_botocore():
    regions = c.known_regions()
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= set(regions)
    assert not any(r.startswith("us-iso") for r in regions)


@pytest.mark.parametrize("region", ["mars-east-1", "US-EAST-1", "", None, "us-east-1 "])
def test_unknown_region_lists_the_allowed(region):
    with pytest.raises(ValidationError, match="not a known EC2 region; allowed: us-east-1, eu-west-1, cn-north-1"):
        c.validate_region(region, REGIONS)


@pytest.mark.parametrize("instance_type,arch", [
    ("c4.large", "x86_64"), ("t3.medium", "x86_64"), ("m5zn.xlarge", "x86_64"), ("g5.xlarge", "x86_64"),
    ("a1.large", "arm64"), ("c6g.large", "arm64"), ("m7gd.2xlarge", "arm64"), ("t4g.nano", "arm64"),
    ("x2gd.medium", "arm64"), ("im4gn.large", "arm64"), ("g5g.xlarge", "arm64"), ("r8g.large", "arm64"),
    ("u-6tb1.metal", "x86_64"),
])
def test_architecture_by_instance_type(instance_type, arch):
    assert c.instance_architecture(instance_type) == arch


@pytest.mark.parametrize("instance_type", ["", "c4", "C4.LARGE", "c4.large;rm", None])
def test_bad_instance_types(instance_type):
    with pytest.raises(ValidationError, match="is not an EC2 instance type"):
        c.instance_architecture(instance_type)


@pytest.mark.parametrize("cidrs,expected", [
    (None, []), ([], []), (["10.0.0.0/8"], ["10.0.0.0/8"]), (["203.0.113.7/32", "2001:db8::/32"], ["203.0.113.7/32", "2001:db8::/32"]),
])
def test_good_cidrs(cidrs, expected):
    assert c.validate_cidrs(cidrs) == expected


@pytest.mark.parametrize("cidrs,message", [
    ("10.0.0.0/8", "must be a list"),
    (["10.0.0.1/8"], "has host bits set"),
    (["nope"], "'nope' is not a CIDR block"),
])
def test_bad_cidrs(cidrs, message):
    with pytest.raises(ValidationError, match=message):
        c.validate_cidrs(cidrs)


@pytest.mark.parametrize("size,vtype,message", [
    (0, "gp2", "out of range for gp2: allowed is 1 to 16384"),
    (100, "st1", "out of range for st1: allowed is 125"),
    (100, "magnetic", "not an EBS type"),
    (True, "gp3", "out of range"),
])
def test_bad_volumes(size, vtype, message):
    with pytest.raises(ValidationError, match=message):
        c.validate_volume(size, vtype)


def test_security_group_rules_open_ssh_only_to_the_given_cidrs():
    rules = c.security_group_rules("coreos-ec2-p-1", ["203.0.113.0/24", "2001:db8::/32"])
    ssh = [r for r in rules if r["ports"] == ["22"]]
    assert [r.get("cidr_ip") or r.get("cidr_ipv6") for r in ssh] == ["203.0.113.0/24", "2001:db8::/32"]
    others = [r for r in rules if r["ports"] != ["22"]]
    assert others and all(r["group_name"] == "coreos-ec2-p-1" and "cidr_ip" not in r for r in others)
    assert {(r["proto"], tuple(r["ports"])) for r in others} == {
        ("tcp", ("2379-2380",)), ("tcp", ("4001", "7001")), ("udp", ("8285",)), ("udp", ("8472",))}


def test_no_ssh_rule_without_cidrs():
    assert not [r for r in c.security_group_rules("g", []) if r["ports"] == ["22"]]


def test_cluster_spec_derives_names_tags_and_filters():
    spec = c.cluster_spec("p-1", "2", "us-east-1", "c6g.large", ssh_allowed_cidrs=["10.0.0.0/8"], regions=REGIONS,
                          extra_tags={"team": "infra"})
    assert spec["size"] == 2 and spec["architecture"] == "arm64"
    assert spec["security_group_name"] == "coreos-ec2-p-1"
    assert spec["tags"] == {"team": "infra", "managed-by": "coreos_ec2.cluster", "coreos-ec2-cluster": "p-1"}
    assert spec["instance_filters"] == {"tag:coreos-ec2-cluster": "p-1",
                                        "instance-state-name": ["pending", "running", "stopping", "stopped"]}
    assert spec["ami_owner"] == "075585003325" and spec["ami_name_pattern"] == "Flatcar-stable-*"


@pytest.mark.parametrize("key", ["aws:foo", "AWS:x", "coreos-ec2-cluster", "Name"])
def test_reserved_tags_are_refused(key):
    with pytest.raises(ValidationError, match=f"extra_tags key '{key}' is reserved"):
        c.cluster_spec("p-1", 1, "us-east-1", "c4.large", regions=REGIONS, extra_tags={key: "v"})


def test_bad_channel():
    with pytest.raises(ValidationError, match="not a Flatcar channel; allowed: stable, beta, alpha, lts"):
        c.cluster_spec("p-1", 1, "us-east-1", "c4.large", channel="edge", regions=REGIONS)


# Captured from ec2_instance_info against the emulator (trimmed to the keys the row uses).
INSTANCES = [
    {"instance_id": "i-2", "state": {"name": "running"}, "instance_type": "c4.large",
     "placement": {"availability_zone": "us-east-1a"}, "private_ip_address": "10.0.0.2",
     "public_ip_address": "54.1.1.2", "public_dns_name": "ec2-54-1-1-2.compute-1.amazonaws.com",
     "launch_time": "2026-11-25T11:00:01+00:00", "subnet_id": "subnet-0a1b2c3d", "instance_lifecycle": "spot",
     "block_device_mappings": [
         {"device_name": "/dev/xvda", "ebs": {"volume_id": "vol-root", "status": "attached"}},
         {"device_name": "/dev/sdb", "ebs": {"volume_id": "vol-data2", "status": "attached"}}]},
    {"instance_id": "i-1", "state": {"name": "pending"}, "instance_type": "c4.large",
     "placement": {"availability_zone": "us-east-1b"}, "private_ip_address": "10.0.0.1",
     "launch_time": "2026-11-25T11:00:00+00:00", "block_device_mappings": []},
]


def test_instance_rows_are_flat_and_oldest_first():
    rows = c.instance_rows(INSTANCES)
    assert [r["id"] for r in rows] == ["i-1", "i-2"]
    assert rows[1] == {
        "id": "i-2", "state": "running", "instance_type": "c4.large", "availability_zone": "us-east-1a",
        "private_ip": "10.0.0.2", "public_ip": "54.1.1.2", "public_dns_name": "ec2-54-1-1-2.compute-1.amazonaws.com",
        "launch_time": "2026-11-25T11:00:01+00:00", "volume_id": "vol-data2", "volume_status": "attached",
        "subnet_id": "subnet-0a1b2c3d", "lifecycle": "spot"}
    assert rows[0]["public_dns_name"] == "" and rows[0]["volume_id"] == ""


@pytest.mark.parametrize("size,members_max,etcd_size", [(1, 5, 1), (3, 5, 3), (5, 5, 5), (7, 5, 5), (100, 5, 5), (100, 7, 7)])
def test_discovery_is_sized_for_the_etcd_members_not_every_machine(size, members_max, etcd_size):
    spec = c.cluster_spec("p-1", size, "us-east-1", "c4.large", regions=REGIONS, etcd_members_max=members_max)
    assert spec["etcd_size"] == etcd_size


@pytest.mark.parametrize("members_max", [0, 10, True, "5"])
def test_bad_etcd_members_max(members_max):
    with pytest.raises(ValidationError, match="etcd_members_max .* is out of range: allowed is 1 to 9"):
        c.cluster_spec("p-1", 3, "us-east-1", "c4.large", regions=REGIONS, etcd_members_max=members_max)


def test_operations_need_no_size_or_machine_type():
    spec = c.cluster_spec("p-1", None, "us-east-1", None, regions=REGIONS)
    assert (spec["size"], spec["etcd_size"], spec["architecture"]) == (None, None, None)
    assert spec["instance_filters"]["tag:coreos-ec2-cluster"] == "p-1"


# ---------------------------------------------------------------------------------------------------
# SSH probes: sections of the probe's output, and which sandbox machines may be probed at all

PROBE_OUT = (
    "cluster is healthy\r\n--- members\r\na1: name=m1 peerURLs=http://10.131.0.4:2380\r\n"
    "b2: name=m2 peerURLs=http://10.131.0.5:2380\r\n--- fleet\r\n1d6338ee... 10.131.0.4 cluster=demo\r\n"
    "--- flannel\r\n{\"Network\": \"10.1.0.0/16\"}\r\nFLANNEL_SUBNET=10.1.9.1/24\r\n--- ebs\r\n/dev/xvdb ext4 /media/ebs\r\n"
    "--- failed\r\n"
)


def test_probe_sections_split_on_their_headers_with_crlf():
    assert c.probe_sections(PROBE_OUT) == {
        "etcd": "cluster is healthy",
        "members": "a1: name=m1 peerURLs=http://10.131.0.4:2380\r\nb2: name=m2 peerURLs=http://10.131.0.5:2380",
        "fleet": "1d6338ee... 10.131.0.4 cluster=demo",
        "flannel": '{"Network": "10.1.0.0/16"}\r\nFLANNEL_SUBNET=10.1.9.1/24',
        "ebs": "/dev/xvdb ext4 /media/ebs",
        "failed": "",
    }


@pytest.mark.parametrize("out, expected", [
    ("cluster is healthy\n--- fleet\nm1", {"etcd": "cluster is healthy", "fleet": "m1"}),  # the old probe's shape
    ("only etcd", {"etcd": "only etcd"}),
    ("x\n--- unknown\ny", {"etcd": "x\n--- unknown\ny"}),  # only known headers split
    ("", {"etcd": ""}),
])
def test_probe_sections_table(out, expected):
    assert c.probe_sections(out) == expected


def test_probe_results_keep_every_section_and_report_machines_not_asked():
    results = [
        {"item": {"id": "i-1"}, "stdout": PROBE_OUT, "rc": 0},
        {"item": {"id": "i-2"}, "unreachable": True, "msg": "timed out"},
        {"item": {"id": "i-3"}, "skipped": True},
    ]
    probes = c.probe_results(results, {"i-4": "no node behind it on the sandbox (x)", "i-1": "ignored"})
    assert probes["i-1"]["reachable"] and probes["i-1"]["etcd"] == "cluster is healthy"
    assert probes["i-1"]["ebs"] == "/dev/xvdb ext4 /media/ebs" and probes["i-1"]["failed"] == ""
    assert probes["i-2"] == {"reachable": False, "etcd": "", "fleet": "", "error": "timed out"}
    assert "i-3" not in probes
    assert probes["i-4"] == {"reachable": False, "etcd": "", "fleet": "", "error": "no node behind it on the sandbox (x)"}


ROWS = [
    {"id": "i-1", "state": "running", "private_ip": "10.131.0.4"},
    {"id": "i-2", "state": "running", "private_ip": "10.131.0.5"},
    {"id": "i-3", "state": "stopped", "private_ip": "10.131.0.6"},
    {"id": "i-4", "state": "running", "private_ip": "10.131.0.7"},
    {"id": "i-5", "state": "running", "private_ip": "10.131.0.8"},
]


def test_sandbox_probe_plan_asks_only_machines_whose_address_a_running_node_holds():
    status = {"mode": "nodes", "reason": "", "instances": {
        "i-1": {"state": "running", "ip": "10.131.0.4"},
        "i-2": {"state": "api-only", "ip": "10.131.0.5", "reason": "sandbox_max_nodes (10) nodes run already"},
        "i-3": {"state": "stopped", "ip": "10.131.0.6"},
        "i-4": {"state": "running", "ip": "10.131.9.9"},  # not the address the emulator reports: never connect
    }}
    plan = c.sandbox_probe_plan(ROWS, status)
    assert [r["id"] for r in plan["probe"]] == ["i-1"]
    assert plan["no_node"] == {
        "i-2": "no node behind it on the sandbox (its node is api-only: sandbox_max_nodes (10) nodes run already)",
        "i-4": "no node behind it on the sandbox (its node is running)",
        "i-5": "no node behind it on the sandbox (the sandbox has not started a node for it yet)",
    }


@pytest.mark.parametrize("status, why", [
    ({"mode": "api-only", "reason": "sandbox nodes need root"}, "the sandbox runs API only: sandbox nodes need root"),
    ({}, "the sandbox runs API only: its host is not running"),
    (None, "the sandbox runs API only: its host is not running"),
])
def test_sandbox_probe_plan_api_only(status, why):
    plan = c.sandbox_probe_plan(ROWS, status)
    assert plan["probe"] == []
    assert set(plan["no_node"]) == {"i-1", "i-2", "i-4", "i-5"}
    assert plan["no_node"]["i-1"] == f"no node behind it on the sandbox ({why})"


SANDBOX_ENDPOINTS = {"ec2_endpoint_url": "http://127.0.0.1:5000", "access_key": "a", "secret_key": "s",
                     "discovery_public": "http://10.131.0.1:4003", "discovery_endpoint": "http://127.0.0.1:4001",
                     "key_name": "coreos-sandbox", "private_key_file": "/sb/coreos-sandbox"}


@pytest.mark.parametrize("target, kwargs, expected", [
    ("sandbox", {}, {"aws": {"endpoint_url": "http://127.0.0.1:5000", "access_key": "a", "secret_key": "s",
                             "profile": None, "region": "eu-west-1"},
                     "discovery": {"protocol": "public", "service": "http://10.131.0.1:4003",
                                   "placeholder": "http://10.131.0.1:4003/" + "0" * 32},
                     "key_name": "coreos-sandbox", "ssh_key_file": "/sb/coreos-sandbox"}),
    ("sandbox", {"discovery_protocol": "etcd_v2", "key_name": "mine"},
     {"discovery": {"protocol": "etcd_v2", "service": "http://127.0.0.1:4001",
                    "placeholder": "http://127.0.0.1:4001/v2/keys/_etcd/registry/" + "0" * 32}, "key_name": "mine"}),
    ("aws", {}, {"aws": {"endpoint_url": None, "access_key": None, "secret_key": None, "profile": None,
                         "region": "eu-west-1"},
                 "discovery": {"protocol": "public", "service": "https://discovery.etcd.io",
                               "placeholder": "https://discovery.etcd.io/" + "0" * 32},
                 "key_name": "", "ssh_key_file": ""}),
    ("aws", {"discovery_protocol": "etcd_v2", "discovery_service": "http://etcd:2379", "aws_profile": "p",
             "aws_endpoint_url": "http://proxy:1", "key_name": "k"},
     {"aws": {"endpoint_url": "http://proxy:1", "access_key": None, "secret_key": None, "profile": "p",
              "region": "eu-west-1"},
      "discovery": {"protocol": "etcd_v2", "service": "http://etcd:2379",
                    "placeholder": "http://etcd:2379/v2/keys/_etcd/registry/" + "0" * 32}, "key_name": "k"}),
])
def test_endpoints(target, kwargs, expected):
    result = c.endpoints(target, SANDBOX_ENDPOINTS, "eu-west-1", **kwargs)
    assert {key: result[key] for key in expected} == expected


def test_probe_plan_per_target():
    status = {"mode": "nodes", "instances": {"i-1": {"state": "running", "ip": "10.131.0.4"}}}
    assert c.probe_plan(ROWS, False, "aws") == {"probe": [], "no_node": {}}
    assert [r["id"] for r in c.probe_plan(ROWS, True, "aws")["probe"]] == ["i-1", "i-2", "i-4", "i-5"]
    sandbox = c.probe_plan(ROWS, True, "sandbox", status)
    assert [r["id"] for r in sandbox["probe"]] == ["i-1"] and set(sandbox["no_node"]) == {"i-2", "i-4", "i-5"}


def test_open_cidr_warnings():
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import open_cidr_warnings

    assert open_cidr_warnings(["203.0.113.0/24", "10.0.0.0/8"]) == []
    assert open_cidr_warnings(["0.0.0.0/0"]) == [
        "ssh_allowed_cidrs entry 0.0.0.0/0 opens SSH to the whole internet: every address in it can try to log in to"
        " the machines; prefer your own network's range"]
    assert len(open_cidr_warnings(["0.0.0.0/1", "::/0"])) == 2


def test_known_regions_are_botocores():
    import botocore.session

    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import PARTITIONS, known_regions

    session = botocore.session.get_session()
    expected = sorted({r for p in PARTITIONS for r in session.get_available_regions("ec2", partition_name=p)})
    assert known_regions() == expected and "us-east-1" in expected
