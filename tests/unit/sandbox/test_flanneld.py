# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox nodes' flanneld stand-in: tables over its pure functions, then runs against a real etcd."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support.etcd import EtcdServer
from node_image import IMAGE, load_program

FLANNELD = IMAGE / "usr" / "bin" / "flanneld.py"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"


fl = load_program("usr/bin/flanneld.py", "sandbox_flanneld")
net = ipaddress.IPv4Network
addr = ipaddress.IPv4Address


# --- network config ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"Network": "10.1.0.0/16"}', ("10.1.0.0/16", 24, "10.1.1.0", "10.1.255.0", "udp")),
    ('{"network": "10.1.0.0/16", "backend": {"type": "VXLAN"}}',
     ("10.1.0.0/16", 24, "10.1.1.0", "10.1.255.0", "vxlan")),
    ('{"Network": "10.1.2.3/16", "Backend": {"Type": "host-gw"}}',
     ("10.1.0.0/16", 24, "10.1.1.0", "10.1.255.0", "host-gw")),
    ('{"Network": "10.0.0.0/8", "SubnetLen": 20}', ("10.0.0.0/8", 20, "10.0.16.0", "10.255.240.0", "udp")),
    ('{"Network": "10.1.0.0/22"}', ("10.1.0.0/22", 24, "10.1.1.0", "10.1.3.0", "udp")),
    ('{"Network": "10.1.0.0/24"}', ("10.1.0.0/24", 26, "10.1.0.64", "10.1.0.192", "udp")),
    ('{"Network": "10.1.0.0/28"}', ("10.1.0.0/28", 30, "10.1.0.4", "10.1.0.12", "udp")),
    ('{"Network": "10.1.0.0/16", "SubnetLen": 0, "SubnetMin": "10.1.10.0", "SubnetMax": "10.1.20.0"}',
     ("10.1.0.0/16", 24, "10.1.10.0", "10.1.20.0", "udp")),
    ('{"Network": "10.1.0.0/16", "Backend": null, "SubnetMin": ""}', ("10.1.0.0/16", 24, "10.1.1.0",
                                                                      "10.1.255.0", "udp")),
])
def test_parse_config_valid(text, expected):
    config = fl.parse_config(text)
    assert (str(config.network), config.subnet_len, str(config.subnet_min), str(config.subnet_max),
            config.backend_type) == expected


@pytest.mark.parametrize("text, message", [
    ("x", "not valid JSON"),
    ('{"Network": "10.1.0.0/16"', "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('"10.1.0.0/16"', "must be a JSON object"),
    ("{}", "Network is missing"),
    ('{"Network": ""}', "Network is missing"),
    ('{"Network": "10.1.0.0"}', 'Network "10.1.0.0" is not a CIDR'),
    ('{"Network": "10.1.0.0/33"}', "is not a CIDR"),
    ('{"Network": 17}', "Network 17 is not a CIDR"),
    ('{"Network": "fd00::/64"}', "is not IPv4"),
    ('{"Network": "10.1.0.0/29"}', "Network is too small"),
    ('{"Network": "10.1.0.0/16", "SubnetLen": 31}', "SubnetLen must be less than /31"),
    ('{"Network": "10.1.0.0/16", "SubnetLen": 17}', "at least four subnets"),
    ('{"Network": "10.1.0.0/16", "SubnetLen": "24"}', 'SubnetLen "24" is not a prefix length'),
    ('{"Network": "10.1.0.0/16", "SubnetLen": 24.5}', "is not a prefix length"),
    ('{"Network": "10.1.0.0/16", "SubnetLen": true}', "is not a prefix length"),
    ('{"Network": "10.1.0.0/16", "SubnetMin": "10.2.0.0"}', "SubnetMin 10.2.0.0 is not in the range"),
    ('{"Network": "10.1.0.0/16", "SubnetMax": "10.1.0.5"}', "SubnetMax is not on a SubnetLen boundary"),
    ('{"Network": "10.1.0.0/16", "SubnetMin": "nope"}', 'SubnetMin "nope" is not an IPv4 address'),
    ('{"Network": "10.1.0.0/16", "SubnetMin": "10.1.9.0", "SubnetMax": "10.1.8.0"}', "is above SubnetMax"),
    ('{"Network": "10.1.0.0/16", "Backend": "udp"}', "Backend must be an object"),
    ('{"Network": "10.1.0.0/16", "Backend": {}}', "Backend.Type is missing"),
    ('{"Network": "10.1.0.0/16", "Backend": {"Type": "bogus"}}', "unknown backend type: bogus"),
])
def test_parse_config_invalid(text, message):
    with pytest.raises(fl.ConfigError) as info:
        fl.parse_config(text)
    assert message in str(info.value)


@pytest.mark.parametrize("backend, mtu", [("udp", 1472), ("vxlan", 1450), ("host-gw", 1500), ("aws-vpc", 1500)])
def test_backend_mtu(backend, mtu):
    assert fl.backend_mtu(backend) == mtu


# --- subnets and leases --------------------------------------------------------------------------------------

CONFIG = fl.parse_config('{"Network": "10.1.0.0/16"}')
SMALL = fl.parse_config('{"Network": "10.1.0.0/28"}')  # /30 subnets .4, .8, .12


def lease(subnet: str, public_ip: str, index: int = 7, ttl: int = 86000) -> object:
    return fl.Lease(net(subnet), public_ip, "udp", fl.lease_value(public_ip, "udp"), index, ttl)


@pytest.mark.parametrize("key, subnet", [
    ("10.1.5.0-24", "10.1.5.0/24"),
    ("/coreos.com/network/subnets/10.1.0.64-26", "10.1.0.64/26"),
    ("10.1.5.0", None),
    ("10.1.5.0-", None),
    ("10.1.5.1-24", None),  # host bits set: not a subnet
    ("garbage-24", None),
])
def test_subnet_keys(key, subnet):
    parsed = fl.parse_subnet_key(key)
    assert (str(parsed) if parsed else None) == subnet
    if parsed:
        assert fl.subnet_key(parsed) == key.rsplit("/", 1)[-1]


def test_gateway_address_and_candidates():
    assert fl.gateway_address(net("10.1.5.0/24")) == "10.1.5.1/24"
    assert [str(s) for s in fl.candidate_subnets(SMALL)] == ["10.1.0.4/30", "10.1.0.8/30", "10.1.0.12/30"]
    assert len(list(fl.candidate_subnets(CONFIG))) == 255


def test_subnet_compatible():
    assert fl.subnet_compatible(CONFIG, net("10.1.5.0/24"))
    assert not fl.subnet_compatible(CONFIG, net("10.1.0.0/24"))  # below SubnetMin
    assert not fl.subnet_compatible(CONFIG, net("10.1.5.0/25"))
    assert not fl.subnet_compatible(CONFIG, net("10.2.5.0/24"))


def test_choose_subnet():
    rng = random.Random(4)
    assert str(fl.choose_subnet(SMALL, [lease("10.1.0.4/30", "1.1.1.1"), lease("10.1.0.12/30", "1.1.1.2")],
                                rng)) == "10.1.0.8/30"
    taken = [lease(str(s), "1.1.1.%d" % i) for i, s in enumerate(fl.candidate_subnets(SMALL))]
    assert fl.choose_subnet(SMALL, taken, rng) is None
    # a lease of another size blocks every subnet it overlaps
    assert fl.choose_subnet(SMALL, [lease("10.1.0.0/28", "1.1.1.1")], rng) is None
    # random among the first 100 free ones
    chosen = {fl.choose_subnet(CONFIG, [lease("10.1.1.0/24", "1.1.1.1")], random.Random(seed)) for seed in range(40)}
    assert len(chosen) > 5
    assert all(net("10.1.2.0/24").network_address <= s.network_address <= addr("10.1.101.0") for s in chosen)


def test_plan_lease():
    rng = random.Random(1)
    mine = lease("10.1.7.0/24", "10.131.0.4")
    other = lease("10.1.8.0/24", "10.131.0.5")
    plan = fl.plan_lease(CONFIG, [other, mine], "10.131.0.4", net("10.1.9.0/24"), rng)
    assert (plan.action, str(plan.subnet), plan.existing, plan.stale) == ("reuse", "10.1.7.0/24", mine, [])
    # the previous subnet from the subnet file, when free
    plan = fl.plan_lease(CONFIG, [other], "10.131.0.4", net("10.1.9.0/24"), rng)
    assert (plan.action, str(plan.subnet)) == ("create", "10.1.9.0/24")
    # ... but not when another node holds it
    plan = fl.plan_lease(CONFIG, [other], "10.131.0.4", net("10.1.8.0/24"), rng)
    assert plan.action == "create" and plan.subnet not in (net("10.1.8.0/24"), net("10.1.0.0/24"))
    # ... nor when the config no longer allows it
    plan = fl.plan_lease(CONFIG, [], "10.131.0.4", net("10.1.0.0/24"), rng)
    assert plan.subnet != net("10.1.0.0/24")
    # our lease the config does not allow any more is deleted, its subnet can be chosen again by others
    odd = lease("10.1.7.0/25", "10.131.0.4")
    plan = fl.plan_lease(CONFIG, [odd], "10.131.0.4", None, rng)
    assert plan.action == "create" and plan.stale == [odd]
    taken = [lease(str(s), "1.1.1.%d" % i) for i, s in enumerate(fl.candidate_subnets(SMALL))]
    with pytest.raises(fl.OutOfSubnets, match="out of subnets"):
        fl.plan_lease(SMALL, taken, "10.131.0.4", None, rng)


def test_parse_leases():
    # GET /v2/keys/coreos.com/network/subnets?recursive=true, as etcd 3.4 answers it (index numbers shortened)
    node = {"key": "/coreos.com/network/subnets", "dir": True, "nodes": [
        {"key": "/coreos.com/network/subnets/10.1.5.0-24", "value": '{"PublicIP":"10.131.0.4","BackendType":"udp"}',
         "expiration": "2026-11-30T20:00:00.1Z", "ttl": 86390, "modifiedIndex": 12, "createdIndex": 12},
        {"key": "/coreos.com/network/subnets/10.1.6.0-24",
         "value": '{"PublicIP":"10.131.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
         "modifiedIndex": 13, "createdIndex": 13},
        {"key": "/coreos.com/network/subnets/junk", "value": "{}", "modifiedIndex": 14, "createdIndex": 14},
        {"key": "/coreos.com/network/subnets/10.1.7.0-24", "value": "not json", "modifiedIndex": 15},
        {"key": "/coreos.com/network/subnets/10.1.8.0-24", "value": '{"PublicIP":"nope"}', "modifiedIndex": 16},
    ]}
    leases = fl.parse_leases(node)
    assert [(str(x.subnet), x.public_ip, x.backend_type, x.modified_index, x.ttl) for x in leases] == [
        ("10.1.5.0/24", "10.131.0.4", "udp", 12, 86390), ("10.1.6.0/24", "10.131.0.5", "vxlan", 13, 0)]
    assert fl.parse_leases({"key": "/x", "dir": True}) == []


def test_lease_value_is_what_flannel_writes():
    assert fl.lease_value("10.131.0.4", "udp") == '{"PublicIP":"10.131.0.4","BackendType":"udp"}'


# --- subnet file, addresses, sd_notify -----------------------------------------------------------------------

def test_subnet_file(tmp_path):
    text = fl.subnet_file_text(CONFIG, net("10.1.5.0/24"), False)
    assert text == "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
    vxlan = fl.parse_config('{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}')
    assert "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n" in fl.subnet_file_text(vxlan, net("10.1.5.0/24"), True)
    path = tmp_path / "run" / "flannel" / "subnet.env"
    fl.write_subnet_file(str(path), text)
    fl.write_subnet_file(str(path), text.replace("10.1.5.1", "10.1.6.1"))
    assert path.read_text() == text.replace("10.1.5.1", "10.1.6.1")
    assert os.listdir(path.parent) == ["subnet.env"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    assert fl.read_previous_subnet(str(path)) == net("10.1.6.0/24")
    assert fl.read_previous_subnet(str(tmp_path / "missing")) is None
    (tmp_path / "bad").write_text("FLANNEL_SUBNET=nonsense\n")
    assert fl.read_previous_subnet(str(tmp_path / "bad")) is None


IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: host0    inet 169.254.12.1/16 metric 2048 brd 169.254.255.255 scope link host0\\       valid_lft forever
2: host0    inet 10.131.0.4/24 brd 10.131.0.255 scope global host0\\       valid_lft forever preferred_lft forever
3: eth1    inet 192.168.7.2/24 brd 192.168.7.255 scope global dynamic eth1\\       valid_lft 3590sec
"""


def test_public_ip():
    addresses = fl.parse_ip_addr(IP_ADDR)
    assert [(n, str(a), s) for n, a, s in addresses] == [
        ("lo", "127.0.0.1/8", "host"), ("host0", "169.254.12.1/16", "link"), ("host0", "10.131.0.4/24", "global"),
        ("eth1", "192.168.7.2/24", "global")]
    assert fl.choose_public_ip("", [], addresses) == "10.131.0.4"
    assert fl.choose_public_ip("", ["eth1"], addresses) == "192.168.7.2"
    assert fl.choose_public_ip("", ["eth9", "192.168.7.2"], addresses) == "192.168.7.2"
    assert fl.choose_public_ip("10.9.9.9", ["eth1"], addresses) == "10.9.9.9"
    with pytest.raises(fl.FlannelError, match="eth9"):
        fl.choose_public_ip("", ["eth9"], addresses)
    with pytest.raises(fl.FlannelError, match="no interface"):
        fl.choose_public_ip("", [], addresses[:2])
    with pytest.raises(fl.FlannelError, match="not an IPv4"):
        fl.choose_public_ip("10.9.9", [], addresses)


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify(tmp_path, abstract):
    name = "@flanneld-test-%d" % os.getpid() if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name[1:] if abstract else name)
        receiver.settimeout(5)
        assert fl.sd_notify("READY=1", {"NOTIFY_SOCKET": name})
        assert receiver.recv(100) == b"READY=1"
    assert not fl.sd_notify("READY=1", {})


# --- flags ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, {"etcd_endpoints": "http://127.0.0.1:4001,http://127.0.0.1:2379", "etcd_prefix": "/coreos.com/network",
              "ip_masq": False, "subnet_file": "/run/flannel/subnet.env", "subnet_lease_renew_margin": 60,
              "config_wait": 60, "iface": [], "public_ip": ""}),
    (["-etcd-endpoints=http://a:2379", "--etcd-prefix", "/p", "-public-ip", "10.0.0.1", "-ip-masq"], {},
     {"etcd_endpoints": "http://a:2379", "etcd_prefix": "/p", "public_ip": "10.0.0.1", "ip_masq": True}),
    (["--iface=eth0", "-iface", "eth1", "-subnet-lease-renew-margin=30", "-config-wait", "5"], {},
     {"iface": ["eth0", "eth1"], "subnet_lease_renew_margin": 30, "config_wait": 5}),
    (["-ip-masq=false"], {"FLANNELD_IP_MASQ": "true"}, {"ip_masq": False}),  # the command line wins
    ([], {"FLANNELD_IP_MASQ": "true", "FLANNELD_ETCD_ENDPOINTS": "http://e:2379", "FLANNELD_IFACE": "eth0",
          "FLANNELD_SUBNET_FILE": "/tmp/s.env", "FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "10",
          "FLANNELD_PUBLIC_IP": ""},
     {"ip_masq": True, "etcd_endpoints": "http://e:2379", "iface": ["eth0"], "subnet_file": "/tmp/s.env",
      "subnet_lease_renew_margin": 10, "public_ip": ""}),
    (["--version"], {}, {"version": True}),
])
def test_parse_args(argv, env, expected):
    opts = fl.parse_args(argv, env)
    assert {key: getattr(opts, key) for key in expected} == expected


@pytest.mark.parametrize("argv, env, message", [
    (["-bogus"], {}, "flag provided but not defined: -bogus"),
    (["-etcd-prefix"], {}, "flag needs an argument: -etcd-prefix"),
    (["-ip-masq=maybe"], {}, 'invalid boolean value "maybe"'),
    (["-config-wait=soon"], {}, 'invalid value "soon"'),
    (["extra"], {}, "unexpected argument: extra"),
    ([], {"FLANNELD_IP_MASQ": "yes"}, "FLANNELD_IP_MASQ"),
])
def test_parse_args_errors(argv, env, message):
    with pytest.raises(fl.UsageError, match=message):
        fl.parse_args(argv, env)


@pytest.mark.parametrize("argv, message", [
    (["-subnet-lease-renew-margin=1440"], "out of acceptable range"),
    (["-subnet-lease-renew-margin=0"], "out of acceptable range"),
    (["-etcd-prefix=coreos.com"], "must start with '/'"),
    (["-config-wait=-1"], "must not be negative"),
])
def test_check_options(argv, message):
    with pytest.raises(fl.UsageError, match=message):
        fl.check_options(fl.parse_args(argv, {}))


# --- against a real etcd -------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def etcd_call(url: str, method: str = "GET", form: dict = None) -> tuple:
    """(status, JSON) of an etcd v2 call, independent of the code under test."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    if not os.access(ETCD, os.X_OK):
        pytest.skip("no etcd binary")
    with EtcdServer(tmp_path_factory.mktemp("etcd"), name="t", start_timeout=30) as server:
        yield server.client_url


_PREFIXES = iter(range(1000))
_SOCKETS = iter(range(1000))


@pytest.fixture
def prefix(etcd):
    """A fresh prefix per test, so that the tests share one etcd without seeing each other's leases."""
    return "/t%d/network" % next(_PREFIXES)


def set_config(etcd: str, prefix: str, value: str) -> None:
    assert etcd_call(etcd + "/v2/keys" + prefix + "/config", "PUT", {"value": value})[0] in (200, 201)


def leases_in_etcd(etcd: str, prefix: str) -> dict:
    """{subnet key: (PublicIP, ttl)} as etcd holds them."""
    status, doc = etcd_call(etcd + "/v2/keys" + prefix + "/subnets")
    if status == 404:
        return {}
    return {n["key"].rsplit("/", 1)[-1]: (json.loads(n["value"])["PublicIP"], n.get("ttl"))
            for n in doc["node"].get("nodes", [])}


def start(etcd: str, prefix: str, *args: str, env: dict = None) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FLANNELD_", "NOTIFY_SOCKET"))}
    environment.update(env or {})
    return subprocess.Popen([sys.executable, str(FLANNELD), "-etcd-endpoints", etcd, "-etcd-prefix", prefix, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)


def finish(proc: subprocess.Popen, timeout: float = 20) -> tuple:
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate(timeout=10)[0]
        pytest.fail("flanneld did not end in %s s:\n%s" % (timeout, output))
    return proc.returncode, output


def run_until_leased(etcd: str, prefix: str, public_ip: str, subnet_file: Path, *args: str):
    """Run flanneld until it tells systemd it is ready, then SIGTERM it: (subnet file text, output)."""
    # an abstract socket, as systemd's: no path length limit to mind, nothing to clean up
    notify = "@flanneld-test-%d-%d" % (os.getpid(), next(_SOCKETS))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + notify[1:])
        receiver.settimeout(20)
        proc = start(etcd, prefix, "-public-ip=" + public_ip, "-subnet-file", str(subnet_file), *args,
                     env={"NOTIFY_SOCKET": notify})
        try:
            ready = receiver.recv(100)
        except socket.timeout:
            ready = b""
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc)
    assert ready == b"READY=1", output
    assert code == 0, output
    return subnet_file.read_text(), output


def subnet_of(text: str) -> str:
    line = [x for x in text.splitlines() if x.startswith("FLANNEL_SUBNET=")][0]
    return str(ipaddress.ip_network(line.split("=", 1)[1], strict=False))


def test_three_nodes_get_distinct_leases_and_keep_them(etcd, prefix, tmp_path):
    set_config(etcd, prefix, '{"Network": "10.1.0.0/16"}')
    subnets = {}
    for number, ip in enumerate(["10.131.0.4", "10.131.0.5", "10.131.0.6"]):
        text, output = run_until_leased(etcd, prefix, ip, tmp_path / ("s%d.env" % number), "-ip-masq")
        subnets[ip] = subnet_of(text)
        assert text == ("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=%s/24\nFLANNEL_MTU=1472\n"
                        "FLANNEL_IPMASQ=true\n" % (net(subnets[ip]).network_address + 1))
        assert "Lease acquired: %s" % subnets[ip] in output
        assert "Exiting cleanly" in output
    assert len(set(subnets.values())) == 3
    held = leases_in_etcd(etcd, prefix)
    assert {ip: key for key, (ip, _ttl) in held.items()} == {
        ip: fl.subnet_key(net(subnet)) for ip, subnet in subnets.items()}
    assert all(86000 < ttl <= 86400 for _ip, ttl in held.values())
    for subnet in subnets.values():
        assert fl.subnet_compatible(CONFIG, net(subnet))

    # a re-run (without the old subnet file) finds its lease by its IP and keeps it
    text, output = run_until_leased(etcd, prefix, "10.131.0.5", tmp_path / "again.env")
    assert subnet_of(text) == subnets["10.131.0.5"]
    assert "reusing" in output
    assert leases_in_etcd(etcd, prefix).keys() == held.keys()


def test_previous_subnet_file_is_honoured_when_free(etcd, prefix, tmp_path):
    set_config(etcd, prefix, '{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}')
    first = run_until_leased(etcd, prefix, "10.131.0.4", tmp_path / "a.env")[0]
    previous = tmp_path / "b.env"
    previous.write_text("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.77.1/24\n")
    text = run_until_leased(etcd, prefix, "10.131.0.5", previous)[0]
    assert subnet_of(text) == "10.1.77.0/24" and "FLANNEL_MTU=1450" in text
    # another node's subnet is not taken over
    taken = tmp_path / "c.env"
    taken.write_text(first)
    text = run_until_leased(etcd, prefix, "10.131.0.6", taken)[0]
    assert subnet_of(text) not in (subnet_of(first), "10.1.77.0/24")
    holders = sorted(ip for ip, _ttl in leases_in_etcd(etcd, prefix).values())
    assert holders == ["10.131.0.4", "10.131.0.5", "10.131.0.6"]


def test_out_of_subnets(etcd, prefix, tmp_path):
    set_config(etcd, prefix, '{"Network": "10.1.0.0/28"}')  # three /30 subnets
    for number in range(3):
        run_until_leased(etcd, prefix, "10.131.0.%d" % (number + 1), tmp_path / ("%d.env" % number))
    code, output = finish(start(etcd, prefix, "-public-ip=10.131.0.9", "-subnet-file", str(tmp_path / "x.env")))
    assert code == 1 and "out of subnets" in output
    assert not (tmp_path / "x.env").exists()
    assert len(leases_in_etcd(etcd, prefix)) == 3


def test_missing_config_gives_up_after_config_wait(etcd, prefix, tmp_path):
    began = time.monotonic()
    code, output = finish(start(etcd, prefix, "-public-ip=10.131.0.4", "-config-wait=2",
                                "-subnet-file", str(tmp_path / "s.env")))
    assert code == 1
    assert 2 <= time.monotonic() - began < 15
    assert "Couldn't fetch network config: 100: Key not found (%s/config)" % prefix in output
    assert output.count("Key not found") >= 2  # retried
    assert not (tmp_path / "s.env").exists()


def test_invalid_config_exits_at_once(etcd, prefix, tmp_path):
    set_config(etcd, prefix, '{"Network": 10.1.0.0/16}')
    began = time.monotonic()
    code, output = finish(start(etcd, prefix, "-public-ip=10.131.0.4", "-config-wait=60",
                                "-subnet-file", str(tmp_path / "s.env")))
    assert code == 1 and time.monotonic() - began < 10
    lines = [line for line in output.splitlines() if "%s/config" % prefix in line]
    assert len(lines) == 1 and "not valid JSON" in lines[0], output
    assert leases_in_etcd(etcd, prefix) == {}


def test_unreachable_etcd(tmp_path):
    port = _free_port()  # nothing listens there
    code, output = finish(start("http://127.0.0.1:%d" % port, "/coreos.com/network", "-public-ip=10.131.0.4",
                                "-config-wait=1", "-subnet-file", str(tmp_path / "s.env")))
    assert code == 1 and "etcd cluster is unavailable" in output


def test_version_and_usage():
    result = subprocess.run([sys.executable, str(FLANNELD), "--version"], capture_output=True, text=True,
                            timeout=20, check=False)
    assert result.returncode == 0 and "stand-in of the coreos_ec2.cluster sandbox" in result.stdout
    result = subprocess.run([sys.executable, str(FLANNELD), "-nope"], capture_output=True, text=True, timeout=20,
                            check=False)
    assert result.returncode == 2 and "flag provided but not defined: -nope" in result.stderr


def test_monitor_renews_and_reacquires(etcd, prefix, tmp_path):
    """The renewal loop, in-process against etcd, with the clock's waits skipped."""
    set_config(etcd, prefix, '{"Network": "10.1.0.0/16"}')
    opts = fl.parse_args(["-etcd-endpoints", etcd, "-etcd-prefix", prefix, "-public-ip=10.131.0.4",
                          "-subnet-file", str(tmp_path / "s.env")], {})
    daemon = fl.Daemon(opts, {}, random.Random(3))
    first = daemon.start()
    key = fl.subnet_key(first.subnet)
    # a lease about to expire is renewed to the full TTL
    etcd_call(etcd + "/v2/keys%s/subnets/%s" % (prefix, key), "PUT",
              {"value": first.value, "ttl": 100, "prevExist": "true"})
    first.ttl = 100
    renewed = daemon.monitor(first, sleep=lambda _s: None, rounds=1)
    assert leases_in_etcd(etcd, prefix)[key][1] > 86000 and renewed.subnet == first.subnet
    # a lease that vanished is taken again (the same subnet, it is free), and a lease held is left alone
    assert etcd_call(etcd + "/v2/keys%s/subnets/%s" % (prefix, key), "DELETE")[0] == 200
    again = daemon.monitor(renewed, sleep=lambda _s: None, rounds=2)
    assert again.subnet == first.subnet and leases_in_etcd(etcd, prefix)[key][0] == "10.131.0.4"
    # a lease another node took over: ours is a new one, the other node keeps its
    etcd_call(etcd + "/v2/keys%s/subnets/%s" % (prefix, key), "PUT",
              {"value": fl.lease_value("10.131.0.9", "udp"), "ttl": 86400})
    moved = daemon.monitor(again, sleep=lambda _s: None, rounds=1)
    assert moved.subnet != first.subnet
    held = leases_in_etcd(etcd, prefix)
    assert held[key][0] == "10.131.0.9" and held[fl.subnet_key(moved.subnet)][0] == "10.131.0.4"
    assert subnet_of((tmp_path / "s.env").read_text()) == str(moved.subnet)
