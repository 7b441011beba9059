# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox host's pure parts: naming, network checks, node files, arguments, the DescribeInstances
parser, the API front's request parsing, volume files, and the emulator's moto patch; and one trip
through the API front to a real (in-process) moto server."""

from __future__ import annotations

import copy
import functools
import ipaddress
import os
import queue
import socket
import stat
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from moto import mock_aws

# sandbox_host is a package the role copies to the host, not part of the collection's Python tree.
_FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "sandbox", "files")
if os.path.abspath(_FILES) not in sys.path:
    sys.path.insert(0, os.path.abspath(_FILES))

from sandbox_host import ec2, ec2_emulator, host, nodes, volumes  # noqa: E402  pylint: disable=wrong-import-position

REGION = "eu-west-1"
AMI = "ami-12c6146b"
GIB = 1024**3


@functools.lru_cache(maxsize=None)
def ec2_client(region: str = REGION, endpoint_url: str | None = None) -> Any:
    """One client per region and endpoint for the whole file: building one costs a second on a busy host.
    Clients made outside mock_aws are still mocked inside it (moto hooks every botocore client)."""
    return boto3.client(
        "ec2", region_name=region, endpoint_url=endpoint_url, aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


@pytest.fixture(scope="module", autouse=True)
def moto_without_default_amis() -> Iterator[None]:
    # moto copies some thousand AMIs into every new backend; nothing here looks an AMI up.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        yield


# ===================================================================================== host.py

@pytest.mark.parametrize(("instance_id", "expected"), [
    ("i-0123456789abcdef0", "i6789abcdef0"),  # the last 11 hex digits: 12 characters, a veth name's limit
    ("i-1234abcd", "i1234abcd"),  # old 8-digit ids are kept whole
    ("I-0123456789ABCDEF0", "i6789abcdef0"),  # case does not matter
    ("i-00000000000000001", "i00000000001"),
    ("i-deadbeefdeadbeef7", "iefdeadbeef7"),
])
def test_node_name_from_hex_ids(instance_id: str, expected: str) -> None:
    assert host.node_name(instance_id) == expected
    assert len(expected) <= 12


@pytest.mark.parametrize("instance_id", ["i-zzzz", "", "i-GHIJKLMNOP", "i-"])
def test_node_name_without_hex_digits_is_still_a_short_name(instance_id: str) -> None:
    name = host.node_name(instance_id)
    assert name.startswith("i") and name[1:].isdigit() and len(name) <= 12
    assert host.node_name(instance_id) == name  # stable within the host process


@pytest.mark.parametrize(("private_dns", "ip", "expected"), [
    ("ip-10-131-0-4.eu-west-1.compute.internal", "10.131.0.4", "ip-10-131-0-4"),
    ("ip-10-1-2-3.ec2.internal", "10.1.2.3", "ip-10-1-2-3"),
    ("ip-10-131-0-4", "10.131.0.4", "ip-10-131-0-4"),  # a bare label
    ("", "10.131.0.5", "ip-10-131-0-5"),  # no private DNS: built from the address
    ("IP-10-131-0-4.eu-west-1.compute.internal", "10.131.0.4", "ip-10-131-0-4"),  # not a lowercase label
    ("ip_10_131_0_4.internal", "10.131.0.4", "ip-10-131-0-4"),
    ("a" * 64 + ".internal", "10.131.0.6", "ip-10-131-0-6"),  # longer than a DNS label may be
    (".internal", "10.131.0.7", "ip-10-131-0-7"),  # empty first label
])
def test_short_hostname(private_dns: str, ip: str, expected: str) -> None:
    assert host.short_hostname(private_dns, ip) == expected


@pytest.mark.parametrize(("network", "host_nets", "problem"), [
    ("10.131.0.0/16", [], None),
    ("10.131.0.0/24", [], None),
    ("192.168.200.0/22", ["192.168.1.20/24", "10.0.0.0/8"], None),
    ("172.31.0.0/16", ["10.131.0.1/16"], None),
    ("10.131.0.0/16", ["0.0.0.0/0"], None),  # a default route overlaps everything and is not a network
    ("10.131.0.0/16", ["garbage", "fd00::/8", "10.131.0.0/16/1"], None),  # unreadable and IPv6 ones skipped
    ("not-a-cidr", [], "is not a network in CIDR notation"),
    ("10.131.0.1/16", [], "is not a network in CIDR notation"),  # host bits set
    ("10.131.0.0/33", [], "is not a network in CIDR notation"),
    ("8.8.0.0/16", [], "must be a private IPv4 range from /16 to /24"),
    ("10.0.0.0/8", [], "must be a private IPv4 range from /16 to /24"),
    ("10.130.0.0/15", [], "must be a private IPv4 range from /16 to /24"),
    ("10.131.0.0/25", [], "must be a private IPv4 range from /16 to /24"),
    ("fd00:131::/64", [], "must be a private IPv4 range from /16 to /24"),
    ("10.131.0.0/16", ["10.131.5.7/24"], "overlaps this host's network 10.131.5.0/24"),  # inside ours
    ("10.131.0.0/16", ["10.0.0.0/8"], "overlaps this host's network 10.0.0.0/8"),  # around ours
    ("10.131.0.0/16", ["192.168.1.20/24", "10.131.255.255/32"], "overlaps this host's network 10.131.255.255/32"),
])
def test_network_problem(network: str, host_nets: list[str], problem: str | None) -> None:
    answer = host.network_problem(network, host_nets)
    if problem is None:
        assert answer is None
    else:
        assert answer is not None and problem in answer and network in answer


def test_host_networks_on_this_host() -> None:
    found = host.host_networks()
    assert isinstance(found, list)
    for cidr in found:
        assert isinstance(cidr, str) and "/" in cidr
        assert ipaddress.ip_network(cidr, strict=False).version == 4
        assert not cidr.startswith("127.")


_IP_ADDR = """[
 {"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
 {"ifindex": 2, "ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.168.1.20", "prefixlen": 24}]},
 {"ifindex": 5, "ifname": "ce2sbx0", "addr_info": [{"family": "inet", "local": "10.131.0.1", "prefixlen": 16}]}
]"""
_IP_ROUTE = """[
 {"dst": "default", "gateway": "192.168.1.1", "dev": "eth0", "flags": []},
 {"dst": "192.168.1.0/24", "dev": "eth0", "protocol": "kernel", "prefsrc": "192.168.1.20", "flags": []},
 {"dst": "10.8.0.0/16", "gateway": "192.168.1.5", "dev": "eth0", "flags": []},
 {"dst": "172.17.5.5", "dev": "eth0", "flags": []},
 {"dst": "10.131.0.0/16", "dev": "ce2sbx0", "protocol": "kernel", "prefsrc": "10.131.0.1", "flags": []},
 {"type": "local", "dst": "192.168.1.20", "table": "local", "dev": "eth0", "flags": []},
 {"type": "broadcast", "dst": "192.168.1.255", "table": "local", "dev": "eth0", "flags": []},
 {"type": "local", "dst": "127.0.0.0/8", "table": "local", "dev": "lo", "flags": []}
]"""


@pytest.fixture
def fake_ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `ip` on PATH that prints captured `ip -j -4 addr show` / `ip -j -4 route show table all` output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ip"
    script.write_text(f"#!/bin/sh\ncase \"$3\" in\n  addr) echo '{_IP_ADDR}';;\n  route) echo '{_IP_ROUTE}';;\n"
                      "  *) exit 1;;\nesac\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return script


@pytest.mark.parametrize(("exclude_link", "expected"), [
    (None, ["192.168.1.20/24", "10.131.0.1/16", "192.168.1.0/24", "10.8.0.0/16", "172.17.5.5/32", "10.131.0.0/16"]),
    ("ce2sbx0", ["192.168.1.20/24", "192.168.1.0/24", "10.8.0.0/16", "172.17.5.5/32"]),
])
def test_host_networks_from_ip_output(fake_ip: Path, exclude_link: str | None, expected: list[str]) -> None:
    assert host.host_networks(exclude_link=exclude_link) == expected


def test_host_networks_without_ip(fake_ip: Path) -> None:
    fake_ip.write_text("#!/bin/sh\nexit 1\n")
    assert host.host_networks() == []
    fake_ip.unlink()
    assert host.host_networks() == []


def _make_tree(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for rel, (content, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def test_image_files(tmp_path: Path) -> None:
    tree = tmp_path / "node-image"
    _make_tree(tree, {
        "usr/bin/flanneld.py": (b"import sys\nprint('flannel')\n", 0o644),
        "usr/bin/docker": (b"#!/bin/sh\nexit 0\n", 0o755),
        "usr/bin/helper.py": (b"print(1)\n", 0o755),
        "etc/systemd/system/oem-cloudinit.service": (b"[Unit]\n", 0o644),
        "usr/lib/sandbox/__pycache__/mod.cpython-311.pyc": (b"\x00pyc", 0o644),
        "usr/lib/sandbox/__pycache__/stray.py": (b"x = 1\n", 0o644),
        "etc/empty": (b"", 0o600),
    })
    (tree / "var" / "lib" / "nothing").mkdir(parents=True)  # an empty directory makes no file

    files = host.image_files(tree)

    assert files == {
        "/usr/bin/flanneld": (b"#!/usr/bin/python3\nimport sys\nprint('flannel')\n", 0o755),
        "/usr/bin/docker": (b"#!/bin/sh\nexit 0\n", 0o755),
        "/usr/bin/helper": (b"#!/usr/bin/python3\nprint(1)\n", 0o755),
        "/etc/systemd/system/oem-cloudinit.service": (b"[Unit]\n", 0o644),
        "/etc/empty": (b"", 0o644),  # not executable: 0644 whatever else its mode says
    }


def test_image_files_of_a_missing_tree(tmp_path: Path) -> None:
    assert host.image_files(tmp_path / "absent") == {}
    (tmp_path / "a-file").write_text("x")
    assert host.image_files(tmp_path / "a-file") == {}


def test_overlay_files_keep_modes(tmp_path: Path) -> None:
    tree = tmp_path / "overlay"
    wanted = {
        "etc/motd": (b"hello\n", 0o644),
        "etc/secret.conf": (b"token=1\n", 0o600),
        "usr/local/bin/tool.py": (b"print(2)\n", 0o750),  # no .py renaming in an overlay
        "usr/local/bin/suid": (b"\x7fELF", 0o4755),
        "home/core/.ssh/authorized_keys": (b"ssh-ed25519 AAAA core\n", 0o400),
    }
    _make_tree(tree, wanted)
    (tree / "empty-dir").mkdir()

    assert host.overlay_files(tree) == {"/" + rel: value for rel, value in wanted.items()}
    assert host.overlay_files(str(tree)) == host.overlay_files(tree)  # type: ignore[arg-type]


def test_nft_rules() -> None:
    assert host.nft_rules("10.131.0.1", 43210) == (
        "table ip coreos_sandbox {\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        "    ip daddr 169.254.169.254 tcp dport 80 dnat to 10.131.0.1:43210\n"
        "  }\n"
        "}\n"
    )


def test_host_firewall_admits_only_the_sandbox_services_and_forwards_nothing() -> None:
    rules = host.host_firewall("ce2sbx0", [4003, 43210, 4003])
    assert rules.startswith("table inet coreos_sandbox_ce2sbx0 {\n")
    assert 'iifname "ce2sbx0" tcp dport { 4003, 43210 } accept' in rules
    assert rules.index("tcp dport") < rules.index('iifname "ce2sbx0" drop')
    assert 'iifname "ce2sbx0" oifname != "ce2sbx0" drop' in rules
    assert 'oifname "ce2sbx0" iifname != "ce2sbx0" drop' in rules
    assert "tcp dport" not in host.host_firewall("br-x.1", [])
    assert host.firewall_table("br-x.1") == "coreos_sandbox_br_x_1"


@pytest.mark.parametrize("network, code", [
    ("10.131.0.0/16", 0),
    ("127.0.0.0/16", 2),  # loopback is no VPC range
    ("169.254.0.0/16", 2),  # nor is link-local, where the metadata address lives
    ("not-a-network", 2),
])
def test_check_exits_with_the_reason(network: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("the check only applies where nodes can run (root)")
    argv = ["--state-dir", "/nonexistent", "--emulator", "127.0.0.1:1", "--network", network, "--check"]
    assert host.main(argv) == code
    if code:
        assert "sandbox_network" in capsys.readouterr().err


def test_parse_args_defaults(tmp_path: Path) -> None:
    args = host.parse_args(["--state-dir", str(tmp_path), "--emulator", "127.0.0.1:5010"])
    assert vars(args) == {
        "state_dir": str(tmp_path), "emulator": "127.0.0.1:5010", "listen": "127.0.0.1:5000",
        "network": "10.131.0.0/16", "bridge": "ce2sbx0", "max_nodes": 10, "image_cache": str(nodes.BUILD_DIR),
        "image_tree": str(host.IMAGE_TREE), "overlay": "", "region": None, "nodes": True, "poll": 2.0,
        "stop_timeout": 20.0, "workers": 4, "allow_port": [], "check": False,
    }
    assert host.IMAGE_TREE == Path(_FILES).resolve() / "node-image"


def test_parse_args_options(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    args = host.parse_args([
        "--state-dir", "/var/lib/sbx", "--emulator", "127.0.0.1:5010", "--listen", "0.0.0.0:5001",
        "--network", "10.132.0.0/16", "--bridge", "sbx1", "--max-nodes", "3", "--overlay", str(overlay),
        "--region", "eu-west-1", "--region", "us-east-1", "--no-nodes", "--poll", "0.5", "--stop-timeout", "3",
        "--workers", "8",
    ])
    assert (args.listen, args.network, args.bridge, args.max_nodes, args.overlay) == (
        "0.0.0.0:5001", "10.132.0.0/16", "sbx1", 3, str(overlay))
    assert args.region == ["eu-west-1", "us-east-1"]
    assert args.nodes is False
    assert (args.poll, args.stop_timeout, args.workers) == (0.5, 3.0, 8)


@pytest.mark.parametrize("is_file", [False, True])
def test_parse_args_overlay_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                is_file: bool) -> None:
    overlay = tmp_path / "overlay"
    if is_file:
        overlay.write_text("x")
    with pytest.raises(SystemExit) as exc:
        host.parse_args(["--state-dir", str(tmp_path), "--emulator", "127.0.0.1:5010", "--overlay", str(overlay)])
    assert exc.value.code == 2
    assert f"--overlay {overlay}: not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--emulator", "127.0.0.1:5010"],  # no state directory
    ["--state-dir", "/tmp/x"],  # no emulator
    ["--state-dir", "/tmp/x", "--emulator", "127.0.0.1:5010", "--max-nodes", "many"],
])
def test_parse_args_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        host.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# ===================================================================================== ec2.py

@pytest.fixture(scope="module")
def described(moto_without_default_amis: None) -> Iterator[dict[str, Any]]:
    """A real DescribeInstances answer (and what else the emulator knows) from moto, in-process."""
    with mock_aws():
        client = ec2_client()
        vpc_id = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        client.create_security_group(GroupName="ssh", Description="ssh", VpcId=vpc_id)
        run = client.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro", KeyName="sandbox",
            SecurityGroups=["ssh"], Placement={"AvailabilityZone": "eu-west-1b"},
            BlockDeviceMappings=[{"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 3, "DeleteOnTermination": False}}],
            MetadataOptions={"HttpTokens": "required"},
        )
        instance_id = run["Instances"][0]["InstanceId"]
        found = {
            "instance_id": instance_id,
            "reservation_id": run["ReservationId"],
            "reservations": client.describe_instances()["Reservations"],
            "volumes": client.describe_volumes(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"],
        }
        # The instance through its life, as the host's poll would see it.
        client.stop_instances(InstanceIds=[instance_id])
        found["stopped"] = client.describe_instances()["Reservations"]
        client.start_instances(InstanceIds=[instance_id])
        found["started"] = client.describe_instances()["Reservations"]
        client.terminate_instances(InstanceIds=[instance_id])
        found["terminated"] = client.describe_instances()["Reservations"]
    yield found


def test_parse_instances_from_moto(described: dict[str, Any]) -> None:
    item = described["reservations"][0]["Instances"][0]
    [instance] = ec2.parse_instances(described["reservations"], REGION)

    assert instance.instance_id == described["instance_id"] == item["InstanceId"]
    assert instance.region == REGION
    assert instance.state == "running" and instance.wants_node and not instance.gone
    assert instance.reservation_id == described["reservation_id"]
    assert instance.instance_type == "t3.micro"
    assert instance.image_id == AMI
    assert instance.availability_zone == "eu-west-1b"
    assert instance.key_name == "sandbox"
    assert instance.security_groups == ("ssh",)
    assert instance.http_tokens == "required"
    assert instance.http_endpoint == "enabled"
    # Addresses and names, against what moto itself says elsewhere in the answer.
    nic = item["NetworkInterfaces"][0]
    assert instance.private_ip == item["PrivateIpAddress"] == nic["PrivateIpAddress"]
    ipaddress.ip_address(instance.private_ip)
    assert instance.public_ip == item["PublicIpAddress"] and ipaddress.ip_address(instance.public_ip)
    assert instance.private_dns == item["PrivateDnsName"] and instance.private_dns.startswith("ip-")
    assert instance.public_dns == item["PublicDnsName"] and instance.public_dns
    assert instance.mac == nic["MacAddress"] and len(instance.mac.split(":")) == 6
    # The /dev/sdb volume, as DescribeVolumes knows it.
    [volume] = described["volumes"]
    [attachment] = volume["Attachments"]
    assert volume["Size"] == 3 and attachment["Device"] == "/dev/sdb"
    assert instance.volumes == (ec2.Volume("/dev/sdb", volume["VolumeId"], False),)


def test_parse_instances_leaves_out_the_root_and_non_ebs_mappings(described: dict[str, Any]) -> None:
    reservations = copy.deepcopy(described["reservations"])
    item = reservations[0]["Instances"][0]
    sdb = item["BlockDeviceMappings"][0]
    item["BlockDeviceMappings"] = [
        {"DeviceName": item["RootDeviceName"], "Ebs": {"VolumeId": "vol-0000000000000000a",
                                                       "DeleteOnTermination": True}},
        sdb,
        {"DeviceName": "/dev/xvdc", "Ebs": {"VolumeId": "vol-0000000000000000c", "DeleteOnTermination": True}},
        {"DeviceName": "/dev/sdd", "VirtualName": "ephemeral0"},
        {"DeviceName": "/dev/sde", "Ebs": {"Status": "attaching"}},  # no volume id yet
    ]
    [instance] = ec2.parse_instances(reservations, REGION)
    assert instance.volumes == (
        ec2.Volume("/dev/sdb", sdb["Ebs"]["VolumeId"], False),
        ec2.Volume("/dev/xvdc", "vol-0000000000000000c", True),
    )


def test_parse_instances_of_a_sparse_entry() -> None:
    reservations = [{"ReservationId": "r-1", "Instances": [{"InstanceId": "i-1"}]},
                    {"Instances": [{"InstanceId": "i-2", "State": {"Name": "stopped"}, "MetadataOptions": None,
                                    "NetworkInterfaces": [], "PrivateIpAddress": "", "KeyName": ""}]},
                    {"ReservationId": "r-3"}]
    assert ec2.parse_instances(reservations, "us-east-1") == [
        ec2.Instance(instance_id="i-1", region="us-east-1", state="unknown", private_ip=None, public_ip=None,
                     private_dns="", public_dns="", instance_type="", availability_zone="", image_id="",
                     reservation_id="r-1", key_name=None, security_groups=(), http_tokens="optional",
                     http_endpoint="enabled", mac="", volumes=()),
        ec2.Instance(instance_id="i-2", region="us-east-1", state="stopped", private_ip=None, public_ip=None,
                     private_dns="", public_dns="", instance_type="", availability_zone="", image_id="",
                     reservation_id="", key_name=None, security_groups=(), http_tokens="optional",
                     http_endpoint="enabled", mac="", volumes=()),
    ]
    assert ec2.parse_instances([], REGION) == []


@pytest.mark.parametrize(("state", "wants_node", "gone"), [
    ("pending", True, False),
    ("running", True, False),
    ("stopping", False, False),
    ("stopped", False, False),
    ("shutting-down", False, True),
    ("terminated", False, True),
    ("unknown", False, False),
])
def test_instance_state_table(described: dict[str, Any], state: str, wants_node: bool, gone: bool) -> None:
    reservations = copy.deepcopy(described["reservations"])
    reservations[0]["Instances"][0]["State"]["Name"] = state
    [instance] = ec2.parse_instances(reservations, REGION)
    assert (instance.state, instance.wants_node, instance.gone) == (state, wants_node, gone)


def test_instance_states_through_moto(described: dict[str, Any]) -> None:
    [[stopped], [started], [terminated]] = (ec2.parse_instances(described[key], REGION)
                                            for key in ("stopped", "started", "terminated"))
    assert {stopped.instance_id, started.instance_id, terminated.instance_id} == {described["instance_id"]}
    assert stopped.state in ("stopping", "stopped") and not stopped.wants_node and not stopped.gone
    assert started.state in ("pending", "running") and started.wants_node and not started.gone
    assert terminated.state in ("shutting-down", "terminated") and terminated.gone and not terminated.wants_node


@pytest.mark.parametrize(("method", "path", "body", "action", "params"), [
    ("POST", "/", b"Action=RunInstances&Version=2016-11-15&ImageId=ami-1&MinCount=1&MaxCount=1",
     "RunInstances", {"Action": ["RunInstances"], "Version": ["2016-11-15"], "ImageId": ["ami-1"],
                      "MinCount": ["1"], "MaxCount": ["1"]}),
    ("GET", "/?Action=DescribeInstances&InstanceId.1=i-1&InstanceId.2=i-2", b"",
     "DescribeInstances", {"Action": ["DescribeInstances"], "InstanceId.1": ["i-1"], "InstanceId.2": ["i-2"]}),
    ("POST", "/?Action=StopInstances", b"Action=StartInstances&InstanceId.1=i-1",  # the form body wins
     "StartInstances", {"Action": ["StartInstances"], "InstanceId.1": ["i-1"]}),
    ("POST", "/?Action=StopInstances&InstanceId.1=i-9", b"",  # a POST with no body: its query string
     "StopInstances", {"Action": ["StopInstances"], "InstanceId.1": ["i-9"]}),
    ("GET", "/?Action=DescribeVolumes", b"Action=DeleteVolume",  # a GET's body is no parameter
     "DescribeVolumes", {"Action": ["DescribeVolumes"]}),
    ("POST", "/", b"Action=ModifyInstanceAttribute&UserData.Value=&Description.Value=a%20b+c%2B",
     "ModifyInstanceAttribute", {"Action": ["ModifyInstanceAttribute"], "UserData.Value": [""],
                                 "Description.Value": ["a b c+"]}),
    ("POST", "/", b"Version=2016-11-15", None, {"Version": ["2016-11-15"]}),
    ("GET", "/", b"", None, {}),
    ("POST", "/", b"Action=RunInstances&UserData=\xff\xfe", "RunInstances",
     {"Action": ["RunInstances"], "UserData": ["\ufffd\ufffd"]}),
])
def test_request_action(method: str, path: str, body: bytes, action: str | None,
                        params: dict[str, list[str]]) -> None:
    assert ec2.request_action(method, path, body) == (action, params)


def _signed_authorization(region: str, service: str = "ec2") -> str:
    request = AWSRequest(method="POST", url=f"https://ec2.{region}.amazonaws.com/",
                         data=b"Action=DescribeInstances&Version=2016-11-15",
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), service, region).add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize(("headers", "region"), [
    ({"Authorization": _signed_authorization("eu-west-1")}, "eu-west-1"),
    ({"Authorization": _signed_authorization("ap-southeast-2")}, "ap-southeast-2"),
    ({"Authorization": _signed_authorization("us-gov-west-1")}, "us-gov-west-1"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=sandbox-access-key/20240501/us-east-1/ec2/aws4_request, "
                       "SignedHeaders=host;x-amz-date, Signature=00ff"}, "us-east-1"),
    ({"Authorization": _signed_authorization("eu-west-1", service="s3")}, None),  # not an EC2 call
    ({"Authorization": "AWS AKIDEXAMPLE:c2lnbmF0dXJl"}, None),  # signature version 2
    ({"Authorization": ""}, None),
    ({"Authorization": None}, None),
    ({}, None),
])
def test_request_region(headers: dict[str, Any], region: str | None) -> None:
    assert ec2.request_region(headers) == region


def test_request_region_from_http_message_headers() -> None:
    # What BaseHTTPRequestHandler.headers is: an email.message.Message, case-insensitive.
    import http.client  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel

    raw = f"authorization: {_signed_authorization('sa-east-1')}\r\nhost: x\r\n\r\n".encode()
    assert ec2.request_region(http.client.parse_headers(io.BytesIO(raw))) == "sa-east-1"


@pytest.mark.parametrize(("params", "ids"), [
    ({"Action": ["RebootInstances"], "InstanceId.1": ["i-a"]}, ["i-a"]),
    ({"InstanceId.2": ["i-b"], "Action": ["StopInstances"], "InstanceId.1": ["i-a"], "Force": ["true"]},
     ["i-a", "i-b"]),
    ({"InstanceId.3": ["i-c", "i-ignored"], "InstanceId.1": ["i-a"], "InstanceId.2": ["i-b"]}, ["i-a", "i-b", "i-c"]),
    ({"Action": ["RunInstances"], "ImageId": ["ami-1"]}, []),
    ({"InstanceId": ["i-x"], "InstanceIds.1": ["i-y"], "Filter.1.Name": ["instance-id"],
      "Filter.1.Value.1": ["i-z"], "InstanceId.a": ["i-w"]}, []),
])
def test_instance_ids(params: dict[str, list[str]], ids: list[str]) -> None:
    assert ec2.instance_ids(params) == ids


def test_instance_ids_order_past_nine() -> None:
    params = {f"InstanceId.{n}": [f"i-{n:02d}"] for n in range(1, 12)}
    assert ec2.instance_ids(params) == [f"i-{n:02d}" for n in range(1, 12)]


# --- ApiFront, end to end -------------------------------------------------------------------------

@pytest.fixture
def moto_server() -> Iterator[tuple[str, int]]:
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    address = server.get_host_and_port()
    try:
        yield address
    finally:
        try:
            reset = urllib.request.Request(f"http://{address[0]}:{address[1]}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=5).close()  # nothing leaks into the next test's backends
        finally:
            server.stop()


class Recorder:
    """The host's side of the front: what on_change and on_region were told, and when a request finished."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, list[str]]] = []
        self.regions: list[str] = []
        self.done: queue.Queue[str] = queue.Queue()
        self.lock = threading.Lock()

    def on_change(self, region: str, action: str, ids: list[str]) -> None:
        with self.lock:
            self.changes.append((region, action, ids))

    def on_region(self, region: str) -> None:
        with self.lock:
            self.regions.append(region)

    def wait_done(self, count: int) -> None:
        """Until `count` more requests went all the way through relay() (callbacks included), 5 s at most."""
        for dummy in range(count):
            self.done.get(timeout=5)


@pytest.fixture
def front(moto_server: tuple[str, int]) -> Iterator[tuple[ec2.ApiFront, Recorder]]:
    recorder = Recorder()
    api = ec2.ApiFront("127.0.0.1", 0, moto_server, recorder.on_change, recorder.on_region)
    relay = api.relay

    def relay_and_tell(handler: Any) -> None:
        try:
            relay(handler)
        finally:
            recorder.done.put(handler.command)

    api.relay = relay_and_tell  # type: ignore[method-assign]  (the handler looks it up on the instance)
    api.start()
    try:
        yield api, recorder
    finally:
        api.stop()
        api.thread.join(timeout=5)


def test_api_front_passes_calls_through_and_reports_changes(front: tuple[ec2.ApiFront, Recorder],
                                                            moto_server: tuple[str, int]) -> None:
    api, recorder = front
    port = api.server.server_address[1]
    assert port != 0 and port != moto_server[1]
    client = ec2_client("eu-west-1", endpoint_url=f"http://127.0.0.1:{port}")

    run = client.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = run["Instances"][0]["InstanceId"]
    client.reboot_instances(InstanceIds=[instance_id])
    described = client.describe_instances(InstanceIds=[instance_id])
    with pytest.raises(ClientError) as exc:  # the emulator's refusal passes through, and changes nothing
        client.reboot_instances(InstanceIds=["i-0000000000000dead"])
    recorder.wait_done(4)

    assert exc.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert [i["InstanceId"] for r in described["Reservations"] for i in r["Instances"]] == [instance_id]
    # The instance is in the emulator itself, not only in what the front answered.
    direct = ec2_client("eu-west-1", endpoint_url=f"http://{moto_server[0]}:{moto_server[1]}")
    states = {i["InstanceId"]: i["State"]["Name"]
              for r in direct.describe_instances()["Reservations"] for i in r["Instances"]}
    assert states == {instance_id: "running"}

    assert recorder.regions == ["eu-west-1"] * 4
    assert recorder.changes == [("eu-west-1", "RunInstances", []),
                                ("eu-west-1", "RebootInstances", [instance_id])]


def test_api_front_answers_502_when_the_emulator_is_gone() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[:2]
    recorder = Recorder()
    api = ec2.ApiFront("127.0.0.1", 0, dead, recorder.on_change, recorder.on_region).start()
    try:
        port = api.server.server_address[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"Action=RunInstances", method="POST",
                                         headers={"Authorization": _signed_authorization("eu-west-1")})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(request, timeout=5)
        assert exc.value.code == 502
        assert b"the emulator did not answer" in exc.value.read()
    finally:
        api.stop()
        api.thread.join(timeout=5)
    assert recorder.changes == [] and recorder.regions == []


# ===================================================================================== volumes.py

@pytest.mark.parametrize(("device_name", "node_device"), [
    ("/dev/sdb", "/dev/xvdb"),
    ("/dev/sdz", "/dev/xvdz"),
    ("/dev/xvdc", "/dev/xvdc"),
    ("/dev/sdf1", "/dev/xvdf1"),
    ("/dev/sda1", "/dev/xvda1"),
    ("/dev/xvdba", "/dev/xvdba"),
    ("/dev/sdba", "/dev/xvdba"),
])
def test_node_device(device_name: str, node_device: str) -> None:
    assert volumes.node_device(device_name) == node_device


@pytest.mark.parametrize("device_name", [
    "", "sdb", "/dev/sd", "/dev/xvd", "/dev/hdb", "/dev/vdb", "/dev/nvme1n1", "/dev/sdB", "/dev/sdabc",
    "/dev/sdb ", "/dev/sdb\n", "/dev/../dev/sdb", "/dev/sdb/../../etc", "dev/sdb",
])
def test_node_device_rejects(device_name: str) -> None:
    with pytest.raises(volumes.VolumeError, match="unsupported device name"):
        volumes.node_device(device_name)


def test_volume_path(tmp_path: Path) -> None:
    assert volumes.volume_path(tmp_path, "vol-0123456789abcdef0") == tmp_path / "vol-0123456789abcdef0.img"
    assert volumes.volume_path(str(tmp_path), "vol-1") == tmp_path / "vol-1.img"  # type: ignore[arg-type]


@pytest.mark.parametrize("volume_id", [
    "", "vol-", "vol-XYZ", "vol-0123ABCD", "../vol-1", "vol-1/../../x", "snap-0123", "vol-" + "a" * 33,
    "vol-1\n", " vol-1", "vol-1.img",
])
def test_volume_path_rejects(tmp_path: Path, volume_id: str) -> None:
    with pytest.raises(volumes.VolumeError, match="unexpected volume id"):
        volumes.volume_path(tmp_path, volume_id)
    with pytest.raises(volumes.VolumeError):
        volumes.ensure_file(tmp_path / "volumes", volume_id, 1)
    assert not (tmp_path / "volumes").exists()


def test_ensure_file_sparse_grows_never_shrinks(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "volumes"
    path = volumes.ensure_file(directory, "vol-0abc", 2)

    assert path == directory / "vol-0abc.img"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    info = path.stat()
    assert info.st_size == 2 * GIB
    assert info.st_blocks * 512 < 1024 * 1024  # sparse: no block of the 2 GiB was written

    with open(path, "r+b") as handle:  # a filesystem's superblock, and data near the end
        handle.write(b"XFSB-superblock")
        handle.seek(2 * GIB - 4)
        handle.write(b"tail")

    assert volumes.ensure_file(directory, "vol-0abc", 3) == path  # ModifyVolume grew it
    assert path.stat().st_size == 3 * GIB
    with open(path, "rb") as handle:
        assert handle.read(15) == b"XFSB-superblock"
        handle.seek(2 * GIB - 4)
        assert handle.read(8) == b"tail\0\0\0\0"

    assert volumes.ensure_file(directory, "vol-0abc", 1) == path  # never shrinks
    assert volumes.ensure_file(directory, "vol-0abc", "3") == path  # type: ignore[arg-type]
    assert path.stat().st_size == 3 * GIB
    with open(path, "rb") as handle:
        assert handle.read(15) == b"XFSB-superblock"
    assert path.stat().st_blocks * 512 < 1024 * 1024
    assert sorted(p.name for p in directory.iterdir()) == ["vol-0abc.img"]


# ===================================================================================== ec2_emulator.py

@pytest.fixture
def unpatch() -> Iterator[None]:
    """patch_moto changes moto's classes for the whole process: put them back after each test."""
    from moto.ec2.models.instances import InstanceBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.subnets import SubnetBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.tags import TagBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.vpcs import VPCBackend  # pylint: disable=import-outside-toplevel

    saved = (VPCBackend.create_default_vpc, InstanceBackend.run_instances, SubnetBackend.create_default_subnet,
             TagBackend.describe_tags)
    try:
        yield
    finally:
        (VPCBackend.create_default_vpc, InstanceBackend.run_instances, SubnetBackend.create_default_subnet,
         TagBackend.describe_tags) = saved


def _default_vpc_and_subnets(client: Any) -> tuple[ipaddress.IPv4Network, dict[str, dict[str, Any]]]:
    [vpc] = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnets = client.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return ipaddress.ip_network(vpc["CidrBlock"]), {s["AvailabilityZone"]: s for s in subnets}


def _run(client: Any, **kwargs: Any) -> dict[str, Any]:
    return client.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, **kwargs)["Instances"][0]


@pytest.mark.parametrize(("network", "vpc_cidr"), [
    ("10.131.0.0/16", "10.131.0.0/16"),
    ("10.140.0.0/17", "10.140.0.0/17"),
    (None, "172.31.0.0/16"),  # moto's own range; the default-subnet rule still applies
])
def test_patch_moto(unpatch: None, network: str | None, vpc_cidr: str) -> None:
    with mock_aws():
        ec2_emulator.patch_moto(network)
        client = ec2_client()
        vpc_net, default_subnets = _default_vpc_and_subnets(client)
        zones = sorted(z["ZoneName"] for z in client.describe_availability_zones()["AvailabilityZones"])

        assert str(vpc_net) == vpc_cidr
        assert sorted(default_subnets) == zones
        for subnet in default_subnets.values():
            subnet_net = ipaddress.ip_network(subnet["CidrBlock"])
            assert subnet_net.prefixlen == 20 and subnet_net.subnet_of(vpc_net)

        for zone in (None, "eu-west-1b", "eu-west-1c"):  # without Placement: the first zone's
            instance = _run(client, **({"Placement": {"AvailabilityZone": zone}} if zone else {}))
            expected_zone = zone or zones[0]
            subnet = default_subnets[expected_zone]
            assert instance["Placement"]["AvailabilityZone"] == expected_zone
            assert instance["SubnetId"] == subnet["SubnetId"]
            assert ipaddress.ip_address(instance["PrivateIpAddress"]) in ipaddress.ip_network(subnet["CidrBlock"])
            # What DescribeInstances says later, too.
            [reservation] = client.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"]
            assert reservation["Instances"][0]["PrivateIpAddress"] == instance["PrivateIpAddress"]


def test_unpatched_moto_puts_instances_outside_the_default_vpc() -> None:
    """The control for test_patch_moto: what patch_moto is there to change (moto 5.2's behaviour)."""
    with mock_aws():
        client = ec2_client()
        vpc_net, _subnets = _default_vpc_and_subnets(client)
        assert str(vpc_net) == "172.31.0.0/16"
        assert ipaddress.ip_address(_run(client)["PrivateIpAddress"]) not in vpc_net


def test_patch_moto_keeps_explicit_subnets(unpatch: None) -> None:
    with mock_aws():
        ec2_emulator.patch_moto("10.131.0.0/16")
        client = ec2_client()
        vpc_net, default_subnets = _default_vpc_and_subnets(client)
        vpc_id = default_subnets["eu-west-1a"]["VpcId"]
        own = client.create_subnet(VpcId=vpc_id, CidrBlock="10.131.200.0/24", AvailabilityZone="eu-west-1c")["Subnet"]
        own_net = ipaddress.ip_network(own["CidrBlock"])

        by_subnet = _run(client, SubnetId=own["SubnetId"])
        by_nic = _run(client, NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": own["SubnetId"]}])
        for instance in (by_subnet, by_nic):
            assert instance["SubnetId"] == own["SubnetId"]
            assert ipaddress.ip_address(instance["PrivateIpAddress"]) in own_net
        assert own_net.subnet_of(vpc_net)


def test_patch_moto_default_vpc_exists_once(unpatch: None) -> None:
    with mock_aws():
        ec2_emulator.patch_moto("10.131.0.0/16")
        client = ec2_client()
        with pytest.raises(ClientError) as exc:
            client.create_default_vpc()
        assert exc.value.response["Error"]["Code"] == "DefaultVpcAlreadyExists"
        assert [v["CidrBlock"] for v in client.describe_vpcs()["Vpcs"]] == ["10.131.0.0/16"]


def test_patch_moto_reads_one_resource_s_tags_as_moto_does(unpatch: None) -> None:
    """The tag lookup by id gives moto's own answers, and every other tag query still goes through moto."""
    from moto.ec2.models.tags import TagBackend  # pylint: disable=import-outside-toplevel

    original = TagBackend.describe_tags
    with mock_aws():
        ec2_emulator.patch_moto("10.131.0.0/16")
        assert TagBackend.describe_tags is not original
        client = ec2_client()
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "coreos-ec2:cluster", "Value": name},
                                                      {"Key": "Name", "Value": f"{name}-node"}]}
                for name in ("a", "b")]
        first = _run(client, TagSpecifications=[tags[0]])["InstanceId"]
        second = _run(client, TagSpecifications=[tags[1]])["InstanceId"]
        client.create_tags(Resources=[first], Tags=[{"Key": "extra", "Value": "1"}])
        client.delete_tags(Resources=[second], Tags=[{"Key": "Name"}])
        untagged = _run(client)["InstanceId"]
        from moto.core import DEFAULT_ACCOUNT_ID  # pylint: disable=import-outside-toplevel
        from moto.ec2.models import ec2_backends  # pylint: disable=import-outside-toplevel

        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        for query in ({"resource-id": [first]}, {"resource-id": [second]}, {"resource-id": [untagged]},
                      {"resource-id": ["i-0000000000000000"]}, {"resource-id": ["i-*"]},
                      {"resource-id": [first, second]}, {"resource-id": [first], "key": ["Name"]}, None):
            assert TagBackend.describe_tags(backend, query) == original(backend, query), query
        assert [t["key"] for t in TagBackend.describe_tags(backend, {"resource-id": [first]})] == [
            "coreos-ec2:cluster", "Name", "extra"]
        # What a describe shows, through the patched lookup.
        [reservation] = client.describe_instances(InstanceIds=[second])["Reservations"]
        assert reservation["Instances"][0]["Tags"] == [{"Key": "coreos-ec2:cluster", "Value": "b"}]


def test_unpatch_fixture_restores_moto() -> None:
    from moto.ec2.models.instances import InstanceBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.tags import TagBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.vpcs import VPCBackend  # pylint: disable=import-outside-toplevel

    # Any test here that patched moto ran with this fixture: moto's own methods are in place.
    assert VPCBackend.create_default_vpc.__module__ == "moto.ec2.models.vpcs"
    assert InstanceBackend.run_instances.__module__ == "moto.ec2.models.instances"
    assert TagBackend.describe_tags.__module__ == "moto.ec2.models.tags"


@pytest.mark.parametrize(("network", "region"), [
    ("10.131.0.0/24", "eu-west-1"),  # smaller than a /20: /26 subnets
    ("10.131.0.0/19", "eu-west-1"),  # two /20 blocks for three zones: /21 subnets
    ("10.131.0.0/18", "us-east-1"),  # four /20 blocks for six zones: /21 subnets
])
def test_patch_moto_every_accepted_network(unpatch: None, network: str, region: str) -> None:
    assert host.network_problem(network, []) is None
    with mock_aws():
        ec2_emulator.patch_moto(network)
        client = ec2_client(region)
        vpc_net, default_subnets = _default_vpc_and_subnets(client)
        assert str(vpc_net) == network
        assert all(ipaddress.ip_network(s["CidrBlock"]).subnet_of(vpc_net) for s in default_subnets.values())
