# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetd STAND-IN of the coreos_ec2.cluster sandbox: it registers this machine in fleet's registry, nothing else.

This is not fleet's fleetd. It has no engine (it schedules nothing) and no agent (it starts no unit and
reports no unit state), and it serves no fleet API. It keeps what the rest of the cluster sees of a
running fleetd: the machine's registration in etcd, so `fleetctl list-machines` (the sandbox's fleetctl
test double, which plays engine and agents itself) lists the machine with its IP and metadata while
fleet.service runs, and stops listing it one TTL after it stops, as with fleet.

What it copies from fleet v1.0.0 (coreos/fleet fleetd/fleetd.go, config/config.go, registry/machine.go,
server/monitor.go):
  * The configuration: options from the environment as FLEET_<OPTION> (upper case), else from the
    config file (--config, default /etc/fleet/fleet.conf when it exists; `option="value"` lines), else
    the defaults; an empty environment variable counts as unset, as in rakyll/globalconf.
    Options used: etcd_servers, etcd_key_prefix, etcd_request_timeout, public_ip, metadata, agent_ttl;
    fleet's other options are accepted in the file and the environment and ignored.
  * The registration: machines/<machine ID>/object under etcd_key_prefix in etcd's v2 keys API, the JSON
    {"ID", "PublicIP", "Metadata", "Version"} with agent_ttl as the key's TTL, written with
    prevExist=true and created (prevExist=false) when missing, refreshed every agent_ttl/2. The machine
    ID is /etc/machine-id; without public_ip, the IPv4 address this machine uses towards its default
    gateway. On SIGTERM it exits and removes nothing: fleet lets the registration expire with the TTL.

Where it differs from fleetd (stand-in only):
  * The options are also accepted as command-line flags (-name VALUE, --name=VALUE); those win over the
    environment. fleetd 1.0 itself takes only --config and --version on its command line.
  * --machine-id-file (default /etc/machine-id) and --proc-net-route (default /proc/net/route), for tests.
  * When systemd passes it fleet.socket (socket activation), every API request is answered at once with
    HTTP 503 and a JSON error saying so, rather than left hanging.
  * No TLS or authentication towards etcd (etcd_cafile, etcd_certfile, etcd_keyfile, etcd_username, ...).

Python 3 standard library only; installed on the node as /opt/bin/fleetd with a #!/usr/bin/python3 line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Mapping

VERSION = "1.0.0"
VERSION_LINE = ("fleetd version %s (stand-in of the coreos_ec2.cluster sandbox: registers this machine only; "
                "no engine, no agent)" % VERSION)
DEFAULT_CONFIG_FILE = "/etc/fleet/fleet.conf"
DEFAULT_MACHINE_ID_FILE = "/etc/machine-id"
DEFAULT_PROC_NET_ROUTE = "/proc/net/route"
ENV_PREFIX = "FLEET_"

# fleetd.go's defaults for the options this stand-in uses.
DEFAULTS = {
    "etcd_servers": "http://127.0.0.1:2379,http://127.0.0.1:4001",
    "etcd_key_prefix": "/_coreos.com/fleet/",
    "etcd_request_timeout": "1.0",
    "public_ip": "",
    "metadata": "",
    "agent_ttl": "30s",
}
ETCD_KEY_NOT_FOUND = 100  # etcd v2 error codes (etcd/error/error.go)
ETCD_NODE_EXIST = 105
SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)


class ConfigError(Exception):
    """A setting fleetd would refuse to start with."""


class EtcdFailure(Exception):
    """etcd could not be reached or refused the write; str() is stable across tries, for log-once."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code  # etcd's errorCode when etcd answered


@dataclass(frozen=True)
class Config:
    etcd_servers: tuple[str, ...]
    etcd_key_prefix: str
    etcd_request_timeout: float
    public_ip: str
    metadata: dict[str, str]
    agent_ttl: int  # whole seconds: etcd v2 TTLs are whole seconds (go-etcd sends int(ttl.Seconds()))
    machine_id_file: str
    proc_net_route: str


def log(level: str, message: str) -> None:
    """One line on stderr, which systemd puts in the journal under fleet.service."""
    sys.stderr.write("%s fleetd: %s\n" % (level, message))
    sys.stderr.flush()


# --- configuration -------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(raw: str) -> float:
    """Go's time.ParseDuration, in seconds ("30s", "1m30s", "1.5h"); agent_ttl is one."""
    text = raw.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ConfigError("time: invalid duration %s" % raw)
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_etcd_servers(raw: str) -> tuple[str, ...]:
    """fleet's pkg.StringSlice: comma-separated, tolerating the ["url", ...] spelling of fleet.conf.sample."""
    servers = tuple(item.lstrip(' ["').rstrip(' ]"') for item in raw.split(","))
    return tuple(server for server in servers if server)


def parse_metadata(raw: str) -> tuple[dict[str, str], list[str]]:
    """fleetd's parseMetadata: 'k=v,k2=v2', parts trimmed; (metadata, the pairs it skipped as fleetd does)."""
    metadata: dict[str, str] = {}
    skipped = []
    for pair in raw.split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            if pair.strip():
                skipped.append(pair)
            continue
        metadata[key.strip()] = value.strip()
    return dict(sorted(metadata.items())), skipped  # sorted as Go's json.Marshal writes a map


def read_config_file(path: str) -> dict[str, str]:
    """The top-level `option = "value"` lines of an ini file, as globalconf reads fleet.conf."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError("Unable to use config file %s: %s" % (path, exc.strerror or exc)) from None
    section = ""
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or section:  # fleetd parses only the default section
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[key.strip()] = value
    return values


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetd", description=VERSION_LINE, allow_abbrev=False)
    parser.add_argument("-version", "--version", action="store_true", help="Print the version and exit")
    parser.add_argument("-config", "--config", default="",
                        help="Path to config file. Fleet will look for a config at %s by default."
                        % DEFAULT_CONFIG_FILE)
    for option in DEFAULTS:
        parser.add_argument("-" + option, "--" + option, dest=option, default=None,
                            help="(stand-in only as a flag; fleetd reads it from %s%s or the config file)"
                            % (ENV_PREFIX, option.upper()))
    parser.add_argument("-machine-id-file", "--machine-id-file", default=DEFAULT_MACHINE_ID_FILE,
                        help="(stand-in only) file holding this machine's ID")
    parser.add_argument("-proc-net-route", "--proc-net-route", default=DEFAULT_PROC_NET_ROUTE,
                        help="(stand-in only) the routing table to find the default gateway in")
    parser.add_argument("command", nargs="?", choices=["version"], help="'version' prints the version")
    return parser


def resolve_options(flags: Mapping[str, str | None], env: Mapping[str, str], file_values: Mapping[str, str]
                    ) -> dict[str, str]:
    """Each option from the command line, else FLEET_<OPTION>, else the config file, else fleetd's default."""
    resolved = {}
    for option, default in DEFAULTS.items():
        from_flag = flags.get(option)
        from_env = env.get(ENV_PREFIX + option.upper(), "")
        if from_flag is not None:
            resolved[option] = from_flag
        elif from_env != "":
            resolved[option] = from_env
        else:
            resolved[option] = file_values.get(option, default)
    return resolved


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    if args.config:
        file_values = read_config_file(args.config)  # fleetd fails hard on a given but unusable file
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        file_values = read_config_file(DEFAULT_CONFIG_FILE)
    else:
        file_values = {}
    options = resolve_options(vars(args), env, file_values)
    ttl = parse_duration(options["agent_ttl"])
    if ttl < 1:
        # go-etcd would send TTL 0, a registration that never expires; fleet's ttl semantics need >= 1s.
        raise ConfigError("agent_ttl %s is under one second" % options["agent_ttl"])
    try:
        timeout = float(options["etcd_request_timeout"])
    except ValueError:
        raise ConfigError("invalid etcd_request_timeout %s" % options["etcd_request_timeout"]) from None
    servers = parse_etcd_servers(options["etcd_servers"])
    if not servers:
        raise ConfigError("etcd_servers is empty")
    metadata, skipped = parse_metadata(options["metadata"])
    for pair in skipped:
        log("WARN", "ignoring metadata %r: want key=value" % pair)
    return Config(servers, options["etcd_key_prefix"], timeout, options["public_ip"].strip(), metadata, int(ttl),
                  args.machine_id_file, args.proc_net_route)


# --- this machine --------------------------------------------------------------------------------------

def read_machine_id(path: str) -> str:
    """machine.readLocalMachineID: the file's content, trimmed; empty is an error."""
    try:
        with open(path, encoding="utf-8") as handle:
            machine_id = handle.read().strip()
    except OSError as exc:
        raise ConfigError("Error reading machine-id %s: %s" % (path, exc.strerror or exc)) from None
    if not machine_id:
        raise ConfigError("Error reading machine-id %s: empty" % path)
    return machine_id


def default_route_ip(proc_net_route: str) -> str:
    """fleet's getLocalIP: an IPv4 address of the default gateway's interface ('' when there is none).

    The kernel picks the same source address for a UDP socket connected to the gateway; connecting sends
    nothing."""
    try:
        with open(proc_net_route, encoding="ascii") as handle:
            rows = [line.split() for line in handle.read().splitlines()[1:]]
    except OSError:
        return ""
    for row in rows:
        if len(row) >= 3 and row[1] == "00000000":
            gateway = socket.inet_ntoa(struct.pack("<I", int(row[2], 16)))
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, row[0].encode() + b"\0")
                    probe.connect((gateway, 9))
                    return probe.getsockname()[0]
            except OSError:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.connect((gateway, 9))  # SO_BINDTODEVICE needs CAP_NET_RAW
                        return probe.getsockname()[0]
                except OSError:
                    continue
    return ""


# --- etcd ----------------------------------------------------------------------------------------------

class Registry:
    """The one registry write fleetd's agent makes that this stand-in needs: SetMachineState."""

    def __init__(self, config: Config):
        self.config = config
        # etcd sits on the node's loopback; a proxy from the environment must not be used.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def machine_key(self, machine_id: str) -> str:
        parts = (self.config.etcd_key_prefix, "machines", machine_id, "object")
        return "/" + "/".join(part.strip("/") for part in parts if part.strip("/"))

    def _put(self, key: str, form: dict[str, str]) -> str:
        """The endpoint that took the write; EtcdFailure when none did or etcd refused it."""
        data = urllib.parse.urlencode(form).encode()
        unreachable = []
        for server in self.config.etcd_servers:
            url = server.rstrip("/") + "/v2/keys" + urllib.parse.quote(key)
            request = urllib.request.Request(url, data=data, method="PUT",
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                with self.opener.open(request, timeout=self.config.etcd_request_timeout):
                    return server
            except urllib.error.HTTPError as exc:
                try:
                    body = json.loads(exc.read().decode("utf-8"))
                except ValueError:
                    body = {}
                if isinstance(body, dict) and "errorCode" in body:
                    # No index in the text: it changes on every try and the caller logs state changes only.
                    code = body["errorCode"]
                    detail = "%s (%s)" % (body.get("message", ""), body.get("cause", ""))
                    raise EtcdFailure("etcd at %s: %s: %s" % (server, code, detail), code) from None
                unreachable.append("%s: HTTP %d" % (server, exc.code))
            except (urllib.error.URLError, OSError) as exc:
                unreachable.append("%s: %s" % (server, getattr(exc, "reason", exc)))
        raise EtcdFailure("etcd not reachable (%s)" % "; ".join(unreachable))

    def set_machine_state(self, machine_id: str, public_ip: str) -> str:
        """registry.SetMachineState: update the registration, create it when missing; returns the endpoint."""
        model = {"ID": machine_id, "PublicIP": public_ip, "Metadata": self.config.metadata, "Version": VERSION}
        form = {"value": json.dumps(model, separators=(",", ":")), "ttl": str(self.config.agent_ttl)}
        key = self.machine_key(machine_id)
        try:
            return self._put(key, dict(form, prevExist="true"))
        except EtcdFailure as exc:
            if exc.code != ETCD_KEY_NOT_FOUND:
                raise
        # Created apart from updated, as fleet does, so watchers see a new machine as a create.
        try:
            return self._put(key, dict(form, prevExist="false"))
        except EtcdFailure as exc:
            if exc.code != ETCD_NODE_EXIST:
                raise
            return self._put(key, dict(form, prevExist="true"))  # lost a race with our previous self


# --- fleet.socket ----------------------------------------------------------------------------------------

API_ANSWER = json.dumps({"error": {"code": 503, "message": "fleet API not available: this fleetd is the "
                                   "sandbox's registration-only stand-in (no engine, no agent)"}}).encode()


def serve_api_socket(listener: socket.socket, stop: threading.Event) -> None:
    """Answer every connection on fleet.socket with 503 at once, so API clients fail fast instead of hanging."""
    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            connection, _address = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        with connection:
            try:
                connection.settimeout(1.0)
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(API_ANSWER) + API_ANSWER)
            except OSError:
                pass


def activated_sockets(env: Mapping[str, str]) -> list[socket.socket]:
    """The sockets systemd passed (sd_listen_fds), none when they were meant for another process."""
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return [socket.socket(fileno=fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)]


# --- main ----------------------------------------------------------------------------------------------

def heartbeat_loop(config: Config, stop: threading.Event, now: Callable[[], float] = time.monotonic) -> None:
    """Keep this machine registered until stop is set; log each change of state once, not each try."""
    registry = Registry(config)
    interval = config.agent_ttl / 2.0  # server/monitor.go beats at TTL/2
    retry = min(1.0, interval)
    state = ""
    while not stop.is_set():
        started = now()
        try:
            machine_id = read_machine_id(config.machine_id_file)
            public_ip = config.public_ip or default_route_ip(config.proc_net_route)
            server = registry.set_machine_state(machine_id, public_ip)
        except (EtcdFailure, ConfigError) as exc:
            if str(exc) != state:
                log("ERROR", "%s; retrying every %gs" % (exc, retry))
                state = str(exc)
            stop.wait(retry)
            continue
        new_state = "registered %s %s at %s" % (machine_id, public_ip, server)
        if new_state != state:
            log("INFO", "registered machine %s (public IP %s, metadata %s) at %s%s with TTL %ds, refreshed every %gs"
                % (machine_id, public_ip or "-", ",".join("%s=%s" % item for item in config.metadata.items()) or "-",
                   server, registry.machine_key(machine_id), config.agent_ttl, interval))
            state = new_state
        stop.wait(max(0.0, interval - (now() - started)))


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = argument_parser().parse_args(argv)
    if args.version or args.command == "version":
        print(VERSION_LINE)
        return 0
    log("INFO", "Starting " + VERSION_LINE)
    try:
        config = build_config(args, env)
    except ConfigError as exc:
        log("ERROR", str(exc))
        return 1

    stop = threading.Event()

    def leave(signum: int, _frame: object) -> None:
        log("INFO", "received %s: exiting; the registration expires with its TTL, as fleet's does"
            % signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    for listener in activated_sockets(env):
        threading.Thread(target=serve_api_socket, args=(listener, stop), daemon=True).start()
    heartbeat_loop(config, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
