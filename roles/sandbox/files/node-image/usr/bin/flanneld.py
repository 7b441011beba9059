# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""flanneld: stand-in of the coreos_ec2.cluster sandbox, NOT the real flannel.

It does what flannel 0.x's etcd v2 subnet manager does, and nothing of its data plane (no udp/vxlan device,
no routes, no iptables): it reads the network config from etcd (<prefix>/config), leases a subnet under
<prefix>/subnets/ (keys like 10.1.5.0-24, values {"PublicIP": ..., "BackendType": ...}, TTL 24 h), writes
/run/flannel/subnet.env, tells systemd it is ready and keeps renewing the lease.

Flags (each also read from $FLANNELD_<FLAG>, upper case with '-' as '_', when not on the command line):
  -etcd-endpoints  -etcd-prefix  -public-ip  -iface (repeatable)  -ip-masq  -subnet-file
  -subnet-lease-renew-margin (minutes)  --version
Stand-in flags (flannel has none of these):
  -config-wait N             give up with exit 1 when the config key is still missing after N seconds
                             (default 60; flannel waits forever, systemd restarts this stand-in instead)
  -lease-check-interval N    seconds between checks that the lease is still ours (default 30)

The logic follows flannel's subnet/config.go (ParseConfig) and subnet/local_manager.go (tryAcquireLease,
allocateSubnet): https://github.com/flannel-io/flannel/tree/v0.14.0/subnet
"""

import dataclasses
import datetime
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

VERSION_LINE = ("flanneld stand-in of the coreos_ec2.cluster sandbox, not the real flannel "
                "(flannel 0.x etcd v2 subnet leases only, no data plane)")

DEFAULT_ENDPOINTS = "http://127.0.0.1:4001,http://127.0.0.1:2379"
SUBNET_TTL = 24 * 60 * 60  # flannel's subnetTTL
RETRY_INTERVAL = 1.0  # flannel retries config and lease every second
ERROR_RETRY_INTERVAL = 5.0  # renewing against an unreachable etcd
MAX_CONFLICTS = 50  # lost races for a subnet before giving up
HTTP_TIMEOUT = 5.0

# Interface MTU minus the encapsulation overhead, for a 1500 byte interface (flannel's backend/*/).
INTERFACE_MTU = 1500
BACKEND_OVERHEAD = {"udp": 28, "vxlan": 50, "ipip": 20, "wireguard": 80}
KNOWN_BACKENDS = ("udp", "vxlan", "host-gw", "aws-vpc", "gce", "alloc", "ali-vpc", "tencent-vpc", "ipip",
                  "ipsec", "wireguard", "extension")


class FlannelError(Exception):
    """A failure that ends flanneld with exit 1; the message is logged as it is."""


class ConfigError(FlannelError):
    """The network config in etcd is not usable."""


class OutOfSubnets(FlannelError):
    """No free subnet is left in [SubnetMin, SubnetMax]."""


class UsageError(Exception):
    """Bad command line or environment flag (exit 2, as Go's flag package)."""


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived; BaseException so that no `except Exception` swallows it."""


# ---------------------------------------------------------------------------------------------------------------
# Logging (glog-like: flannel logs through glog)

def log(level: str, message: str) -> None:
    now = datetime.datetime.now()
    sys.stderr.write("%s%s %7d flanneld] %s\n" % (level, now.strftime("%m%d %H:%M:%S.%f"), os.getpid(), message))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------
# Flags

@dataclasses.dataclass
class Options:
    etcd_endpoints: str = DEFAULT_ENDPOINTS
    etcd_prefix: str = "/coreos.com/network"
    public_ip: str = ""
    iface: list = dataclasses.field(default_factory=list)
    ip_masq: bool = False
    subnet_file: str = "/run/flannel/subnet.env"
    subnet_lease_renew_margin: int = 60
    config_wait: int = 60
    lease_check_interval: int = 30
    version: bool = False


# flag name -> kind; kind is str, int, bool or list (repeatable string)
FLAGS = {
    "etcd-endpoints": "str",
    "etcd-prefix": "str",
    "public-ip": "str",
    "iface": "list",
    "ip-masq": "bool",
    "subnet-file": "str",
    "subnet-lease-renew-margin": "int",
    "config-wait": "int",
    "lease-check-interval": "int",
    "version": "bool",
}

USAGE = """Usage: flanneld [flags]  (%s)
  -etcd-endpoints=URLS           comma separated etcd endpoints (default %s)
  -etcd-prefix=PATH              etcd prefix (default /coreos.com/network)
  -public-ip=IP                  IP accessible by other nodes for inter-host communication
  -iface=NAME|IP                 interface to use, may be repeated (default: first non-loopback interface)
  -ip-masq                       written to the subnet file as FLANNEL_IPMASQ (no iptables rules are set up)
  -subnet-file=PATH              file to write the subnet into (default /run/flannel/subnet.env)
  -subnet-lease-renew-margin=N   minutes before the lease expires to renew it (default 60)
  -config-wait=N                 stand-in: seconds to wait for the config key before exit 1 (default 60)
  -lease-check-interval=N        stand-in: seconds between checks that the lease is ours (default 30)
  --version                      print the version
Every flag is also read from $FLANNELD_<FLAG> when it is not on the command line.
""" % (VERSION_LINE, DEFAULT_ENDPOINTS)

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(name: str, value: str) -> bool:
    # Go's strconv.ParseBool
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError('invalid boolean value "%s" for -%s' % (value, name))


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        try:
            return int(value, 0)
        except ValueError:
            raise UsageError('invalid value "%s" for flag -%s: parse error' % (value, name)) from None


def _set_flag(opts: Options, name: str, value) -> None:
    kind = FLAGS[name]
    attr = name.replace("-", "_")
    if kind == "bool":
        setattr(opts, attr, value if isinstance(value, bool) else _parse_bool(name, value))
    elif kind == "int":
        setattr(opts, attr, _parse_int(name, value))
    elif kind == "list":
        getattr(opts, attr).append(value)
    else:
        setattr(opts, attr, value)


def parse_args(argv: list, environ: dict) -> Options:
    """Parse flags as Go's flag package does, then fill the unset ones from FLANNELD_* (coreos/pkg/flagutil)."""
    opts = Options()
    seen = set()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            raise UsageError("unexpected argument: %s" % arg)
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = body.partition("=")
        if name in ("h", "help"):
            raise UsageError("")
        if name not in FLAGS:
            raise UsageError("flag provided but not defined: -%s" % name)
        if FLAGS[name] == "bool":
            _set_flag(opts, name, value if has_value else True)
        else:
            if not has_value:
                if not args:
                    raise UsageError("flag needs an argument: -%s" % name)
                value = args.pop(0)
            _set_flag(opts, name, value)
        seen.add(name)
    if args:
        raise UsageError("unexpected argument: %s" % args[0])
    for name in FLAGS:
        env_value = environ.get("FLANNELD_" + name.upper().replace("-", "_"), "")
        if name not in seen and env_value != "":
            try:
                _set_flag(opts, name, env_value)
            except UsageError as exc:
                raise UsageError("%s (from $FLANNELD_%s)" % (exc, name.upper().replace("-", "_"))) from None
    return opts


def check_options(opts: Options) -> None:
    if not 0 < opts.subnet_lease_renew_margin < 24 * 60:
        # flannel's own check and wording
        raise UsageError("Invalid subnet-lease-renew-margin option, out of acceptable range")
    if opts.config_wait < 0:
        raise UsageError("-config-wait must not be negative")
    if opts.lease_check_interval <= 0:
        raise UsageError("-lease-check-interval must be positive")
    if not opts.etcd_prefix.startswith("/"):
        raise UsageError("-etcd-prefix must start with '/': %s" % opts.etcd_prefix)
    if not [e for e in opts.etcd_endpoints.split(",") if e.strip()]:
        raise UsageError("-etcd-endpoints is empty")


# ---------------------------------------------------------------------------------------------------------------
# Network config (flannel subnet/config.go)

@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Address
    subnet_max: ipaddress.IPv4Address
    backend_type: str


def _field(obj: dict, name: str):
    """Go's encoding/json matches field names case-insensitively, preferring the exact name."""
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    return None


def _config_ip(obj: dict, name: str):
    value = _field(obj, name)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError("%s %s is not an IPv4 address" % (name, json.dumps(value))) from None


def parse_config(text: str) -> NetworkConfig:
    """Parse and validate the JSON of <prefix>/config; raise ConfigError saying what is wrong."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError("not valid JSON (%s): %r" % (exc, text[:80])) from None
    if not isinstance(obj, dict):
        raise ConfigError("must be a JSON object like {\"Network\": \"10.1.0.0/16\"}, not %r" % text[:80])

    network_value = _field(obj, "Network")
    if network_value is None or network_value == "":
        raise ConfigError("Network is missing: please define a correct Network parameter, "
                          "e.g. {\"Network\": \"10.1.0.0/16\"}")
    try:
        if not isinstance(network_value, str) or "/" not in network_value:
            raise ValueError
        network = ipaddress.ip_network(network_value, strict=False)
    except ValueError:
        raise ConfigError("Network %s is not a CIDR like \"10.1.0.0/16\"" % json.dumps(network_value)) from None
    if network.version != 4:
        raise ConfigError("Network %s is not IPv4 (the stand-in, as flannel 0.x here, leases IPv4 only)"
                          % network_value)

    subnet_len = _field(obj, "SubnetLen")
    if subnet_len is None or subnet_len == 0:
        # flannel: a /24 per host if the network holds at least four of them, else a quarter of the network
        if network.prefixlen > 28:
            raise ConfigError("Network is too small. Minimum useful network prefix is /28")
        subnet_len = 24 if network.prefixlen <= 22 else network.prefixlen + 2
    else:
        if isinstance(subnet_len, bool) or not isinstance(subnet_len, int) or subnet_len < 0:
            raise ConfigError("SubnetLen %s is not a prefix length" % json.dumps(subnet_len))
        if subnet_len > 30:
            raise ConfigError("SubnetLen must be less than /31 (is /%d)" % subnet_len)
        if subnet_len < network.prefixlen + 2:
            raise ConfigError("Network must be able to accommodate at least four subnets "
                              "(Network /%d, SubnetLen /%d)" % (network.prefixlen, subnet_len))

    size = 1 << (32 - subnet_len)
    first = int(network.network_address)
    last = int(network.broadcast_address)
    subnet_min = _config_ip(obj, "SubnetMin")
    subnet_max = _config_ip(obj, "SubnetMax")
    for name, value in (("SubnetMin", subnet_min), ("SubnetMax", subnet_max)):
        if value is None:
            continue
        if value not in network:
            raise ConfigError("%s %s is not in the range of the Network %s" % (name, value, network))
        if int(value) % size:
            raise ConfigError("%s is not on a SubnetLen boundary: %s (SubnetLen /%d)" % (name, value, subnet_len))
    # flannel skips the network's first subnet: its .0 address would clash with the network address
    subnet_min = subnet_min if subnet_min is not None else ipaddress.IPv4Address(first + size)
    subnet_max = subnet_max if subnet_max is not None else ipaddress.IPv4Address(last + 1 - size)
    if subnet_min > subnet_max:
        raise ConfigError("SubnetMin %s is above SubnetMax %s" % (subnet_min, subnet_max))

    backend = _field(obj, "Backend")
    if backend is None:
        backend_type = "udp"
    elif not isinstance(backend, dict):
        raise ConfigError("Backend must be an object like {\"Type\": \"vxlan\"}, not %s" % json.dumps(backend))
    else:
        backend_type = _field(backend, "Type")
        if not isinstance(backend_type, str) or not backend_type:
            raise ConfigError("Backend.Type is missing or not a string: %s" % json.dumps(backend))
        backend_type = backend_type.lower()
        if backend_type not in KNOWN_BACKENDS:
            raise ConfigError("unknown backend type: %s (known: %s)" % (backend_type, ", ".join(KNOWN_BACKENDS)))
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, backend_type)


def backend_mtu(backend_type: str) -> int:
    return INTERFACE_MTU - BACKEND_OVERHEAD.get(backend_type, 0)


# ---------------------------------------------------------------------------------------------------------------
# Subnets and leases (flannel subnet/local_manager.go)

def subnet_key(subnet: ipaddress.IPv4Network) -> str:
    return "%s-%d" % (subnet.network_address, subnet.prefixlen)


def parse_subnet_key(key: str):
    """'10.1.5.0-24' (or a full etcd key ending in it) -> IPv4Network; None if it is not a subnet key."""
    name = key.rsplit("/", 1)[-1]
    address, sep, length = name.rpartition("-")
    if not sep or not length.isdigit():
        return None
    try:
        return ipaddress.IPv4Network("%s/%s" % (address, length))
    except ValueError:
        return None


def subnet_compatible(config: NetworkConfig, subnet: ipaddress.IPv4Network) -> bool:
    """flannel's isSubnetConfigCompat."""
    return (subnet.prefixlen == config.subnet_len
            and config.subnet_min <= subnet.network_address <= config.subnet_max)


def candidate_subnets(config: NetworkConfig):
    size = 1 << (32 - config.subnet_len)
    for address in range(int(config.subnet_min), int(config.subnet_max) + 1, size):
        yield ipaddress.IPv4Network((address, config.subnet_len))


def gateway_address(subnet: ipaddress.IPv4Network) -> str:
    """What flannel writes as FLANNEL_SUBNET: the subnet's first host address with the prefix length."""
    return "%s/%d" % (subnet.network_address + 1, subnet.prefixlen)


@dataclasses.dataclass
class Lease:
    subnet: ipaddress.IPv4Network
    public_ip: str
    backend_type: str
    value: str  # the stored JSON, as compared by prevValue
    modified_index: int = 0
    ttl: int = 0  # seconds left when read; 0 means no expiry (a reservation)


def lease_value(public_ip: str, backend_type: str) -> str:
    # flannel's LeaseAttrs as Go's json.Marshal writes it (no BackendData: there is no data plane)
    return json.dumps({"PublicIP": public_ip, "BackendType": backend_type}, separators=(",", ":"))


def parse_leases(node) -> list:
    """The children of <prefix>/subnets as Leases; malformed entries are skipped, as flannel does."""
    leases = []
    for child in (node or {}).get("nodes") or []:
        subnet = parse_subnet_key(child.get("key", ""))
        if subnet is None or child.get("dir"):
            continue
        try:
            attrs = json.loads(child.get("value", ""))
            public_ip = str(ipaddress.IPv4Address(attrs["PublicIP"]))
        except (ValueError, TypeError, KeyError):
            continue
        leases.append(Lease(subnet, public_ip, str(attrs.get("BackendType", "")), child["value"],
                            int(child.get("modifiedIndex", 0)), int(child.get("ttl", 0))))
    return leases


def choose_subnet(config: NetworkConfig, leases: list, rng: random.Random):
    """flannel's allocateSubnet: a random one of the first 100 free subnets; None when all are taken."""
    taken = [lease.subnet for lease in leases]
    bag = []
    for subnet in candidate_subnets(config):
        if not any(subnet.overlaps(other) for other in taken):
            bag.append(subnet)
            if len(bag) >= 100:
                break
    return rng.choice(bag) if bag else None


@dataclasses.dataclass
class LeasePlan:
    action: str  # "reuse" an existing lease, or "create" a new one
    subnet: ipaddress.IPv4Network
    existing: object = None  # the Lease to reuse
    stale: list = dataclasses.field(default_factory=list)  # our leases the config no longer allows: delete


def plan_lease(config: NetworkConfig, leases: list, public_ip: str, previous, rng: random.Random) -> LeasePlan:
    """Choose as flannel's tryAcquireLease does: our own lease, else the previous subnet if it is free, else a
    random free one. Unlike flannel, a previous subnet now leased to another IP is left to it."""
    stale = []
    for lease in leases:
        if lease.public_ip == public_ip:
            if subnet_compatible(config, lease.subnet):
                return LeasePlan("reuse", lease.subnet, lease, stale)
            stale.append(lease)
    others = [lease for lease in leases if lease not in stale]
    if previous is not None and subnet_compatible(config, previous):
        if not any(previous.overlaps(lease.subnet) for lease in others):
            return LeasePlan("create", previous, None, stale)
    subnet = choose_subnet(config, others, rng)
    if subnet is None:
        raise OutOfSubnets("failed to acquire lease: out of subnets: every subnet in %s ... %s /%d of %s is "
                           "leased (%d leases)" % (config.subnet_min, config.subnet_max, config.subnet_len,
                                                   config.network, len(others)))
    return LeasePlan("create", subnet, None, stale)


# ---------------------------------------------------------------------------------------------------------------
# etcd v2 client

class EtcdError(Exception):
    """An error answer of etcd's v2 API."""

    def __init__(self, status: int, doc: dict):
        self.status = status
        self.code = doc.get("errorCode")
        self.message = doc.get("message", "")
        self.cause = doc.get("cause", "")
        self.index = doc.get("index", 0)
        super().__init__(str(self))

    def __str__(self):
        # as the Go etcd v2 client formats it
        return "%s: %s (%s) [%s]" % (self.code, self.message, self.cause, self.index)


class EtcdUnavailable(Exception):
    """No endpoint answered as an etcd v2 API."""


ETCD_KEY_NOT_FOUND = 100
ETCD_TEST_FAILED = 101
ETCD_NODE_EXIST = 105


class EtcdClient:
    """The few etcd v2 keys API calls flannel makes, over plain HTTP, trying the endpoints in turn."""

    def __init__(self, endpoints: str, timeout: float = HTTP_TIMEOUT):
        self.endpoints = [e.strip().rstrip("/") for e in endpoints.split(",") if e.strip()]
        self.timeout = timeout
        # no proxies: etcd is on the node's own network
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method: str, key: str, params: dict = None) -> dict:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        path = "/v2/keys" + urllib.parse.quote(key)
        data = None
        if method == "GET":
            path += "?" + urllib.parse.urlencode(params) if params else ""
        elif params:
            data = urllib.parse.urlencode(params).encode()
        failures = []
        for number, endpoint in enumerate(self.endpoints):
            request = urllib.request.Request(endpoint + path, data=data, method=method)
            if data is not None:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
                exc.close()
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                failures.append("error #%d: %s %s: %s" % (number, method, endpoint + path, reason))
                continue
            try:
                doc = json.loads(body)
                if not isinstance(doc, dict):
                    raise ValueError
            except ValueError:
                failures.append("error #%d: %s %s: HTTP %d, response is invalid json (%r): not an etcd v2 "
                                "endpoint (etcd 3.4 needs --enable-v2 / ETCD_ENABLE_V2=true)"
                                % (number, method, endpoint + path, status, body[:40]))
                continue
            if status >= 400 or "errorCode" in doc:
                raise EtcdError(status, doc)
            return doc
        raise EtcdUnavailable("client: etcd cluster is unavailable or misconfigured; " + "; ".join(failures))

    def get(self, key: str, recursive: bool = False) -> dict:
        return self._request("GET", key, {"recursive": "true" if recursive else None})["node"]

    def set(self, key: str, value: str, ttl: int = None, prev_exist: bool = None, prev_value: str = None,
            prev_index: int = None) -> dict:
        params = {"value": value, "ttl": ttl, "prevValue": prev_value, "prevIndex": prev_index}
        if prev_exist is not None:
            params["prevExist"] = "true" if prev_exist else "false"
        return self._request("PUT", key, params)["node"]

    def delete(self, key: str, prev_index: int = None) -> dict:
        return self._request("DELETE", key, {"prevIndex": prev_index})["node"]


# ---------------------------------------------------------------------------------------------------------------
# The node: public IP, subnet file, systemd

def parse_ip_addr(text: str) -> list:
    """`ip -4 -o addr show` lines -> [(ifname, IPv4Interface, scope)]."""
    addresses = []
    for line in text.splitlines():
        fields = line.replace("\\", " ").split()
        if len(fields) < 4 or fields[2] != "inet":
            continue
        try:
            address = ipaddress.IPv4Interface(fields[3])
        except ValueError:
            continue
        scope = fields[fields.index("scope") + 1] if "scope" in fields[:-1] else "global"
        addresses.append((fields[1].split("@")[0], address, scope))
    return addresses


def _ioctl_addresses() -> list:
    """Without iproute2: each interface's primary IPv4 address from SIOCGIFADDR."""
    import fcntl
    import struct
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            address = ipaddress.IPv4Interface(socket.inet_ntoa(packed[20:24]))
            scope = "host" if address.ip.is_loopback else "link" if address.ip.is_link_local else "global"
            addresses.append((name, address, scope))
    return addresses


def node_addresses() -> list:
    try:
        result = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return _ioctl_addresses()
    if result.returncode != 0:
        raise FlannelError("ip -4 -o addr show failed: %s" % result.stderr.strip())
    return parse_ip_addr(result.stdout)


def choose_public_ip(public_ip: str, ifaces: list, addresses: list) -> str:
    """-public-ip, else the first global address of the first matching -iface (a name or an IP), else of the
    first non-loopback interface."""
    if public_ip:
        try:
            return str(ipaddress.IPv4Address(public_ip))
        except ValueError:
            raise FlannelError("-public-ip %r is not an IPv4 address" % public_ip) from None
    usable = [(name, addr) for name, addr, scope in addresses if scope == "global"]
    for iface in ifaces:
        for name, addr in usable:
            if iface in (name, str(addr.ip)):
                return str(addr.ip)
    if ifaces:
        raise FlannelError("Failed to find any valid interface to use: no global IPv4 address on %s"
                           % ", ".join(ifaces))
    for name, addr in usable:
        if name != "lo" and not addr.ip.is_loopback:
            return str(addr.ip)
    raise FlannelError("Failed to find any valid interface to use: no interface with a global IPv4 address")


def subnet_file_text(config: NetworkConfig, subnet: ipaddress.IPv4Network, ip_masq: bool) -> str:
    return ("FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=%s\n"
            % (config.network, gateway_address(subnet), backend_mtu(config.backend_type),
               "true" if ip_masq else "false"))


def write_subnet_file(path: str, text: str) -> None:
    """Write atomically (flannel writes a temporary file and renames it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def read_previous_subnet(path: str):
    """FLANNEL_SUBNET of an earlier run's subnet file, as its network; None if there is none."""
    try:
        with open(path) as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _sep, value = line.partition("=")
        if name.strip() == "FLANNEL_SUBNET":
            try:
                network = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                return None
            return network if network.version == 4 else None
    return None


def sd_notify(state: str, environ: dict) -> bool:
    """Send state to systemd's $NOTIFY_SOCKET ('@' = abstract namespace); False when there is none."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


# ---------------------------------------------------------------------------------------------------------------
# The daemon

def fetch_config(client: EtcdClient, key: str) -> NetworkConfig:
    node = client.get(key)
    if node.get("dir"):
        raise ConfigError("is a directory, not a JSON value")
    return parse_config(node.get("value", ""))


def wait_for_config(client: EtcdClient, prefix: str, wait: int, sleep=time.sleep) -> NetworkConfig:
    key = prefix.rstrip("/") + "/config"
    deadline = time.monotonic() + wait
    while True:
        missing = False
        try:
            return fetch_config(client, key)
        except ConfigError as exc:
            raise ConfigError("Couldn't fetch network config: invalid network config in %s: %s" % (key, exc)) \
                from None
        except EtcdError as exc:
            missing = exc.code == ETCD_KEY_NOT_FOUND
            if missing:
                # etcd names the first missing path element; name the whole key, it is what to set
                log("E", "Couldn't fetch network config: %s: %s (%s) [%s]" % (exc.code, exc.message, key, exc.index))
            else:
                log("E", "Couldn't fetch network config: %s" % exc)
        except EtcdUnavailable as exc:
            log("E", "Couldn't fetch network config: %s" % exc)
        if time.monotonic() >= deadline:
            if missing:
                raise FlannelError("Network config %s still missing after %d s (stand-in -config-wait); set it, e.g. "
                                   "etcdctl set %s '{\"Network\": \"10.1.0.0/16\"}'" % (key, wait, key))
            raise FlannelError("Couldn't fetch network config %s within %d s (stand-in -config-wait): see the "
                               "errors above" % (key, wait))
        sleep(RETRY_INTERVAL)


def list_leases(client: EtcdClient, prefix: str) -> list:
    try:
        return parse_leases(client.get(prefix.rstrip("/") + "/subnets", recursive=True))
    except EtcdError as exc:
        if exc.code == ETCD_KEY_NOT_FOUND:
            return []
        raise


def _lease_from_node(node: dict, subnet, public_ip: str, backend_type: str) -> Lease:
    return Lease(subnet, public_ip, backend_type, node.get("value", ""), int(node.get("modifiedIndex", 0)),
                 int(node.get("ttl", 0)))


def try_acquire_lease(client: EtcdClient, prefix: str, config: NetworkConfig, public_ip: str, previous,
                      rng: random.Random):
    """One attempt; a Lease, or None when another node won a race (try again)."""
    subnets_dir = prefix.rstrip("/") + "/subnets/"
    plan = plan_lease(config, list_leases(client, prefix), public_ip, previous, rng)
    for lease in plan.stale:
        log("I", "Found lease (%s) for current IP (%s) but not compatible with current config, deleting"
            % (lease.subnet, public_ip))
        try:
            client.delete(subnets_dir + subnet_key(lease.subnet), prev_index=lease.modified_index)
        except EtcdError as exc:
            if exc.code not in (ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED):
                raise
    value = lease_value(public_ip, config.backend_type)
    key = subnets_dir + subnet_key(plan.subnet)
    try:
        if plan.action == "reuse":
            log("I", "Found lease (%s) for current IP (%s), reusing" % (plan.subnet, public_ip))
            # a lease without TTL is a reservation and stays one
            ttl = SUBNET_TTL if plan.existing.ttl else None
            node = client.set(key, value, ttl=ttl, prev_index=plan.existing.modified_index)
        else:
            node = client.set(key, value, ttl=SUBNET_TTL, prev_exist=False)
            log("I", "Allocated lease (%s) to current node (%s)" % (plan.subnet, public_ip))
    except EtcdError as exc:
        if exc.code in (ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED, ETCD_NODE_EXIST):
            log("I", "Lost the race for %s (%s), trying again" % (plan.subnet, exc))
            return None
        raise
    return _lease_from_node(node, plan.subnet, public_ip, config.backend_type)


def acquire_lease(client: EtcdClient, prefix: str, config: NetworkConfig, public_ip: str, previous,
                  rng: random.Random, patience: float, sleep=time.sleep) -> Lease:
    deadline = time.monotonic() + patience
    conflicts = 0
    while True:
        try:
            lease = try_acquire_lease(client, prefix, config, public_ip, previous, rng)
            if lease is not None:
                return lease
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise FlannelError("failed to acquire lease: lost %d races for a subnet under %s/subnets"
                                   % (conflicts, prefix))
            continue
        except (EtcdError, EtcdUnavailable) as exc:
            log("E", "Failed to acquire lease: %s" % exc)
        if time.monotonic() >= deadline:
            raise FlannelError("failed to acquire lease within %d s" % patience)
        sleep(RETRY_INTERVAL)


def renew_lease(client: EtcdClient, prefix: str, lease: Lease):
    """Extend the lease if it is still exactly ours (prevValue); the renewed Lease, or None if it was lost."""
    key = prefix.rstrip("/") + "/subnets/" + subnet_key(lease.subnet)
    try:
        node = client.set(key, lease.value, ttl=SUBNET_TTL, prev_value=lease.value)
    except EtcdError as exc:
        if exc.code in (ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED):
            return None
        raise
    return _lease_from_node(node, lease.subnet, lease.public_ip, lease.backend_type)


def lease_held(client: EtcdClient, prefix: str, lease: Lease) -> bool:
    key = prefix.rstrip("/") + "/subnets/" + subnet_key(lease.subnet)
    try:
        node = client.get(key)
    except EtcdError as exc:
        if exc.code == ETCD_KEY_NOT_FOUND:
            return False
        raise
    try:
        return json.loads(node.get("value", "")).get("PublicIP") == lease.public_ip
    except (ValueError, AttributeError):
        return False


class Daemon:
    def __init__(self, opts: Options, environ: dict, rng: random.Random = None):
        self.opts = opts
        self.environ = environ
        self.rng = rng or random.Random()
        self.client = EtcdClient(opts.etcd_endpoints)
        self.config = None
        self.public_ip = None

    def publish(self, lease: Lease) -> None:
        write_subnet_file(self.opts.subnet_file, subnet_file_text(self.config, lease.subnet, self.opts.ip_masq))

    def acquire(self, previous) -> Lease:
        return acquire_lease(self.client, self.opts.etcd_prefix, self.config, self.public_ip, previous, self.rng,
                             self.opts.config_wait)

    def start(self) -> Lease:
        self.public_ip = choose_public_ip(self.opts.public_ip, self.opts.iface,
                                          [] if self.opts.public_ip else node_addresses())
        log("I", "Using %s as external address; etcd endpoints %s" % (self.public_ip, self.opts.etcd_endpoints))
        self.config = wait_for_config(self.client, self.opts.etcd_prefix, self.opts.config_wait)
        log("I", "Found network config - Backend type: %s" % self.config.backend_type)
        lease = self.acquire(read_previous_subnet(self.opts.subnet_file))
        self.publish(lease)
        log("I", "Lease acquired: %s" % lease.subnet)
        try:
            sd_notify("READY=1", self.environ)
        except OSError as exc:
            log("W", "Failed to notify systemd the process is ready: %s" % exc)
        return lease

    def monitor(self, lease: Lease, sleep=time.sleep, rounds: int = None) -> Lease:
        """Renew the lease before it expires and re-acquire it if it was lost; `rounds` bounds the loop."""
        margin = self.opts.subnet_lease_renew_margin * 60
        expires = time.monotonic() + (lease.ttl or float("inf"))
        while rounds is None or rounds > 0:
            rounds = None if rounds is None else rounds - 1
            renew_at = expires - margin
            sleep(max(0.0, min(renew_at - time.monotonic(), self.opts.lease_check_interval)))
            try:
                if time.monotonic() >= renew_at:
                    renewed = renew_lease(self.client, self.opts.etcd_prefix, lease)
                    if renewed is not None:
                        lease = renewed
                        expires = time.monotonic() + (lease.ttl or float("inf"))
                        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lease.ttl)
                        log("I", "Lease renewed, new expiration: %s" % expiry.replace(microsecond=0).isoformat())
                        continue
                elif lease_held(self.client, self.opts.etcd_prefix, lease):
                    continue
                log("W", "Lease %s is no longer ours (expired, deleted or taken); acquiring a lease again"
                    % lease.subnet)
                lease = self.acquire(lease.subnet)
                expires = time.monotonic() + (lease.ttl or float("inf"))
                self.publish(lease)
                log("I", "Lease acquired: %s" % lease.subnet)
            except (EtcdError, EtcdUnavailable) as exc:
                log("E", "Error checking or renewing lease %s: %s" % (lease.subnet, exc))
                sleep(ERROR_RETRY_INTERVAL)
        return lease


def _terminate(signum, _frame):
    raise Terminated(signum)


def main(argv: list = None, environ: dict = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        opts = parse_args(argv, environ)
        if opts.version:
            print(VERSION_LINE)
            return 0
        check_options(opts)
    except UsageError as exc:
        if str(exc):
            sys.stderr.write("%s\n" % exc)
        sys.stderr.write(USAGE)
        return 0 if not str(exc) else 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        daemon = Daemon(opts, environ)
        daemon.monitor(daemon.start())
    except Terminated:
        log("I", "Exiting cleanly (the lease stays in etcd until it expires)")
        return 0
    except FlannelError as exc:
        log("E", str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
