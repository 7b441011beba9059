# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetd STAND-IN of the coreos_ec2.cluster sandbox: fleet's machine registration, engine and agent in Python.

This is not fleet's fleetd. It does on each machine what fleetd v1.0.0 does, through the machine's etcd (v2
keys API) and systemd (systemctl), in fleet's own registry layout, so that fleetctl (the sandbox's fleetctl
double, or a real fleetctl with --driver=etcd) shows what really runs:

  * registration: machines/<machine ID>/object = {"ID", "PublicIP", "Metadata", "Version"} with agent_ttl as
    the key's TTL, refreshed every agent_ttl/2 (server/heartbeat.go, registry/machine.go).
  * engine, on one machine at a time: the leader holds lease/engine-leader ({"MachineID", "Version": 1},
    taken with prevExist=false and renewed with prevIndex, TTL 5 x engine_reconcile_interval) after
    checking engine/version ("1"). Every engine_reconcile_interval seconds the leader unschedules units
    whose desired state is inactive, whose machine's registration expired or that may no longer run there
    (compare-and-delete of job/<unit>/target with prevValue), then schedules each unit whose desired state is
    loaded or launched onto the least loaded machine able to run it (fewest units, then machine ID) with a
    create of job/<unit>/target; [X-Fleet] MachineID, MachineOf, MachineMetadata and Conflicts decide which
    machine is able (engine/reconciler.go, engine/scheduler.go, agent/state.go AbleToRun). Global units are
    the agents' business, as in fleet.
  * agent, every second: the units scheduled here and the global units whose MachineMetadata this machine
    has are written to /run/fleet/units/<unit> (the registry's serialised unit), linked into systemd
    (`systemctl link --runtime --force --no-reload`), one `daemon-reload`, then started or stopped with
    `systemctl start|stop --no-block` as their desired state says; units no longer wanted here are
    stopped, unlinked (`disable --runtime --no-reload`) and removed (agent/reconcile.go,
    systemd/manager.go). A started unit gets job/<unit>/job-state = machine ID with TTL agent_ttl (the
    heartbeat that makes fleetctl call it launched), and every loaded unit's real `systemctl show`
    LoadState, ActiveState and SubState is published as states/<unit>/<machine ID> = {"loadState",
    "activeState", "subState", "machineState", "unitHash"} with TTL agent_ttl (agent/unit_state.go,
    registry/unit_state.go).
  * SIGTERM or SIGINT: fleetd's Purge (fleetd/fleetd.go shutdown, server/server.go Purge): the agent
    stops and unloads the units it loaded and withdraws their states and heartbeats, the engine releases
    its lease, and the machine's registration is deleted, so the engine of another machine reschedules
    the units at once instead of one TTL later.

The rest of the registry (job/<unit>/object {"Name", "UnitHash": [20 bytes]}, job/<unit>/target-state,
unit/<sha1> {"Raw": "<unit file>"}) is written by fleetctl and only read here.

Configuration, as fleetd's (fleetd/fleetd.go, config/config.go): options from the environment as
FLEET_<OPTION> (upper case), else from the config file (--config, default /etc/fleet/fleet.conf when it
exists; `option="value"` lines), else the defaults; an empty variable counts as unset (rakyll/globalconf).
Options used: etcd_servers, etcd_key_prefix, etcd_request_timeout, public_ip, metadata, agent_ttl,
engine_reconcile_interval, disable_engine; fleet's other options are accepted and ignored. The machine ID
is /etc/machine-id; without public_ip, the IPv4 address this machine uses towards its default gateway.

Where it differs from fleetd (stand-in only):
  * It polls etcd (agent every second, engine every engine_reconcile_interval) instead of watching it, and
    drives systemd through systemctl instead of D-Bus.
  * It serves no fleet API: when systemd passes it fleet.socket, every request is answered at once with
    HTTP 503 and a JSON error saying so (use fleetctl with --driver=etcd, or the sandbox's fleetctl double).
  * The options are also accepted as command-line flags (-name VALUE, --name=VALUE), which win over the
    environment; fleetd 1.0 itself takes only --config and --version. Stand-in flags for tests:
    --machine-id-file (default /etc/machine-id), --proc-net-route (default /proc/net/route), --units-dir
    (default /run/fleet/units), --systemctl (default systemctl), --agent-interval (default 1 second).
  * No TLS or authentication towards etcd; no [X-Fleet] Replaces, resources or metadata operators (as the
    fleetctl double); no legacy state/<unit> keys; unloading a unit withdraws this machine's state of it
    only (fleet deletes states/<unit>/ of every machine and lets the others publish theirs again).

Python 3 standard library only; installed on the node as /opt/bin/fleetd with a #!/usr/bin/python3 line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

VERSION = "1.0.0"
VERSION_LINE = ("fleetd version %s (stand-in of the coreos_ec2.cluster sandbox: machine registration, engine and "
                "agent over etcd's v2 keys API and systemctl; no fleet API)" % VERSION)
DEFAULT_CONFIG_FILE = "/etc/fleet/fleet.conf"
DEFAULT_MACHINE_ID_FILE = "/etc/machine-id"
DEFAULT_PROC_NET_ROUTE = "/proc/net/route"
DEFAULT_UNITS_DIR = "/run/fleet/units"  # systemd/manager.go DefaultUnitsDirectory
DEFAULT_AGENT_INTERVAL = 1.0
ENV_PREFIX = "FLEET_"

# fleetd.go's defaults for the options this stand-in uses.
DEFAULTS = {
    "etcd_servers": "http://127.0.0.1:2379,http://127.0.0.1:4001",
    "etcd_key_prefix": "/_coreos.com/fleet/",
    "etcd_request_timeout": "1.0",
    "public_ip": "",
    "metadata": "",
    "agent_ttl": "30s",
    "engine_reconcile_interval": "2.0",
    "disable_engine": "false",
}
ETCD_KEY_NOT_FOUND = 100  # etcd v2 error codes (etcd/error/error.go)
ETCD_TEST_FAILED = 101
ETCD_NODE_EXIST = 105
SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)

ENGINE_LEASE = "engine-leader"  # engine/engine.go engineLeaseName
ENGINE_VERSION = 1  # engine/engine.go engineVersion
LEASE_TTL_FACTOR = 5  # engine.Run: leaseTTL := ival * 5
INACTIVE, LOADED, LAUNCHED = "inactive", "loaded", "launched"
JOB_STATES = (INACTIVE, LOADED, LAUNCHED)
SYSTEMCTL_TIMEOUT = 60.0
# systemctl's exit status for a unit that is not loaded: nothing to stop (systemctl(1), EXIT STATUS).
SYSTEMCTL_NOT_LOADED = 5

# unit/unit.go: the unit types fleet recognises in its units directory, and the characters of a unit name.
RECOGNIZED_UNIT_TYPES = ("service", "socket", "timer", "path", "device", "mount", "automount")
VALID_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@")


class ConfigError(Exception):
    """A setting fleetd would refuse to start with."""


class EtcdFailure(Exception):
    """etcd could not be reached or refused the request; str() is stable across tries, for log-once."""

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
    engine_reconcile_interval: float = 2.0
    disable_engine: bool = False
    units_dir: str = DEFAULT_UNITS_DIR
    systemctl: str = "systemctl"
    agent_interval: float = DEFAULT_AGENT_INTERVAL


def log(level: str, message: str) -> None:
    """One line on stderr, which systemd puts in the journal under fleet.service."""
    sys.stderr.write("%s fleetd: %s\n" % (level, message))
    sys.stderr.flush()


class LogOnce:
    """Logs a component's failures when they change, not on every retry, and its recovery once."""

    def __init__(self, what: str):
        self.what = what
        self.last = ""

    def failed(self, message: str) -> None:
        if message != self.last:
            log("ERROR", "%s: %s; retrying" % (self.what, message))
            self.last = message

    def ok(self) -> None:
        if self.last:
            log("INFO", "%s: working again" % self.what)
            self.last = ""


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


def parse_bool(option: str, raw: str) -> bool:
    """Go's strconv.ParseBool, which the flag package uses for fleetd's boolean options."""
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ConfigError("invalid boolean value %r for %s" % (raw, option))


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
    parser.add_argument("-units-dir", "--units-dir", default=DEFAULT_UNITS_DIR,
                        help="(stand-in only) where the agent writes the unit files it loads")
    parser.add_argument("-systemctl", "--systemctl", default="systemctl",
                        help="(stand-in only) the systemctl the agent runs")
    parser.add_argument("-agent-interval", "--agent-interval", type=float, default=DEFAULT_AGENT_INTERVAL,
                        help="(stand-in only) seconds between two rounds of the agent")
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


def _positive_float(option: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError("invalid %s %s" % (option, raw)) from None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ConfigError("invalid %s %s: want a number of seconds above 0" % (option, raw))
    return value


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
    timeout = _positive_float("etcd_request_timeout", options["etcd_request_timeout"])
    interval = _positive_float("engine_reconcile_interval", options["engine_reconcile_interval"])
    servers = parse_etcd_servers(options["etcd_servers"])
    if not servers:
        raise ConfigError("etcd_servers is empty")
    metadata, skipped = parse_metadata(options["metadata"])
    for pair in skipped:
        log("WARN", "ignoring metadata %r: want key=value" % pair)
    agent_interval = _positive_float("agent-interval", str(args.agent_interval))
    return Config(servers, options["etcd_key_prefix"], timeout, options["public_ip"].strip(), metadata, int(ttl),
                  args.machine_id_file, args.proc_net_route, interval,
                  parse_bool("disable_engine", options["disable_engine"].strip()), args.units_dir, args.systemctl,
                  agent_interval)


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


@dataclass
class Machine:
    """machine.MachineState as the registry holds it."""

    id: str
    public_ip: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    version: str = ""

    def match_id(self, wanted: str) -> bool:
        """MachineState.MatchID: the full ID or its first 8 characters (the short ID)."""
        return wanted in (self.id, self.id[:8])

    def has_metadata(self, required: Mapping[str, set[str]]) -> bool:
        """machine.HasMetadata: every required key with one of the allowed values."""
        return all(self.metadata.get(key) in values for key, values in required.items())


# --- etcd ----------------------------------------------------------------------------------------------

class Etcd:
    """The v2 keys API calls fleet makes, tried on each of etcd_servers in turn."""

    def __init__(self, servers: Iterable[str], timeout: float):
        self.servers = tuple(servers)
        self.timeout = timeout
        self.last_server = ""  # the endpoint that answered the last request
        # etcd sits on the node's loopback; a proxy from the environment must not be used.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, key: str, query: Mapping[str, str] | None = None,
                form: Mapping[str, str] | None = None) -> dict:
        """etcd's JSON answer; EtcdFailure with errorCode when etcd refused it, without when none answered."""
        path = "/v2/keys" + urllib.parse.quote(key)
        query_text = "?" + urllib.parse.urlencode(query) if query else ""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        unreachable = []
        for server in self.servers:
            request = urllib.request.Request(server.rstrip("/") + path + query_text, data=data, method=method)
            if data is not None:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    body = json.loads(response.read().decode("utf-8"))
                self.last_server = server
                return body
            except urllib.error.HTTPError as exc:
                try:
                    body = json.loads(exc.read().decode("utf-8"))
                except ValueError:
                    body = {}
                if isinstance(body, dict) and "errorCode" in body:
                    # No index in the text: it changes on every try and callers log state changes only.
                    code = body["errorCode"]
                    detail = "%s (%s)" % (body.get("message", ""), body.get("cause", ""))
                    raise EtcdFailure("etcd at %s: %s: %s" % (server, code, detail), code) from None
                unreachable.append("%s: HTTP %d" % (server, exc.code))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                unreachable.append("%s: %s" % (server, getattr(exc, "reason", exc)))
        raise EtcdFailure("etcd not reachable (%s)" % "; ".join(unreachable))

    def get(self, key: str, recursive: bool = False) -> dict | None:
        """The node at key, with its children when recursive; None when there is no such key."""
        try:
            return self.request("GET", key, {"recursive": "true", "sorted": "true"} if recursive else None)["node"]
        except EtcdFailure as exc:
            if exc.code == ETCD_KEY_NOT_FOUND:
                return None
            raise

    def put(self, key: str, value: str, ttl: int | None = None, prev_exist: bool | None = None,
            prev_value: str | None = None, prev_index: int | None = None) -> dict:
        """Set key to value (with the conditions given); the node written."""
        form = {"value": value}
        if ttl is not None:
            form["ttl"] = str(ttl)
        if prev_exist is not None:
            form["prevExist"] = "true" if prev_exist else "false"
        if prev_value is not None:
            form["prevValue"] = prev_value
        if prev_index is not None:
            form["prevIndex"] = str(prev_index)
        return self.request("PUT", key, form=form)["node"]

    def delete(self, key: str, recursive: bool = False, prev_value: str | None = None,
               prev_index: int | None = None) -> bool:
        """Delete key; False when it was not there (or no longer held prev_value / prev_index)."""
        query = {}
        if recursive:
            query["recursive"] = "true"
        if prev_value is not None:
            query["prevValue"] = prev_value
        if prev_index is not None:
            query["prevIndex"] = str(prev_index)
        try:
            self.request("DELETE", key, query or None)
        except EtcdFailure as exc:
            if exc.code in (ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED):
                return False
            raise
        return True


def leaves(node: dict | None) -> Iterable[dict]:
    """Every value node under an etcd node (the node itself when it is one)."""
    stack = [node] if node else []
    while stack:
        current = stack.pop()
        if current.get("dir"):
            stack.extend(current.get("nodes", []))
        else:
            yield current


# --- unit files and their [X-Fleet] section (unit/unit.go, job/job.go) -------------------------------------

def unit_options(raw: str) -> list[tuple[str, str, str]]:
    """(section, name, value) of a unit file as fleet stores it (go-systemd's serialisation: '[Section]' and
    'Name=Value' lines); comments, blank lines and continuation lines are tolerated as go-systemd reads them."""
    options: list[tuple[str, str, str]] = []
    section: str | None = None
    pending: tuple[str, list[str]] | None = None
    for line in raw.split("\n"):
        line = line.rstrip("\r").strip()
        if pending is not None:
            name, parts = pending
            if line.endswith("\\"):
                parts.append(line[:-1] + " ")
                continue
            parts.append(line)
            options.append((section or "", name, "".join(parts).strip()))
            pending = None
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            end = line.find("]")
            section = line[1:end] if end > 0 else None
            continue
        name, sep, value = line.partition("=")
        if section is None or not sep:
            continue
        value = value.strip()
        if value.endswith("\\"):
            pending = (name.strip(), [value[:-1] + " "])
            continue
        options.append((section, name.strip(), value))
    if pending is not None:
        options.append((section or "", pending[0], "".join(pending[1]).strip()))
    return options


def parse_multivalue_line(line: str) -> list[str]:
    """fleet's unit.parseMultivalueLine: '"a=b" "c=d"' holds two values, anything else one."""
    if not (line.startswith('"') and line.endswith('"')):
        return [line]
    values, current, quoted = [], [], False
    for char in line:
        if char == '"':
            quoted = not quoted
            continue
        if char == " " and not quoted:
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    values.append("".join(current))
    return values


def x_fleet(raw: str) -> dict[str, list[str]]:
    """The [X-Fleet] options of a unit file, multi-value lines split as fleet splits them."""
    values: dict[str, list[str]] = {}
    for section, name, value in unit_options(raw):
        if section == "X-Fleet":
            values.setdefault(name, []).extend(parse_multivalue_line(value))
    return values


def go_path_match(pattern: str, name: str) -> bool:
    """Go's path.Match, which fleet's Conflicts use ('*' and '?' never match '/'); a bad pattern matches nothing."""
    regex, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            regex.append("[^/]*")
        elif char == "?":
            regex.append("[^/]")
        elif char == "\\":
            i += 1
            if i >= len(pattern):
                return False
            regex.append(re.escape(pattern[i]))
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "]") else i + 1)
            if end == -1:
                return False
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            if not body:
                return False
            regex.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            regex.append(re.escape(char))
        i += 1
    try:
        return re.fullmatch("".join(regex), name, re.DOTALL) is not None
    except re.error:
        return False


class Requirements:
    """A unit's [X-Fleet] requirements under its name, with %n %N %p %i substituted (job/job.go)."""

    def __init__(self, name: str, values: Mapping[str, list[str]]):
        self.values = {key: [self._printf(name, value) for value in items] for key, items in values.items()}

    @staticmethod
    def _printf(name: str, value: str) -> str:
        base, dot, _suffix = name.rpartition(".")
        if not dot:
            return value
        prefix, at, instance = base.partition("@")
        value = value.replace("%n", name).replace("%N", base)
        return value.replace("%p", prefix).replace("%i", instance if at else "")

    def is_global(self) -> bool:
        values = self.values.get("Global", [])
        return bool(values) and values[-1].lower() == "true"

    def conflicts(self) -> list[str]:
        return self.values.get("X-Conflicts", []) + self.values.get("Conflicts", [])

    def peers(self) -> list[str]:
        return self.values.get("X-ConditionMachineOf", []) + self.values.get("MachineOf", [])

    def required_target(self) -> str | None:
        for key in ("MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID"):
            if self.values.get(key):
                return self.values[key][0]
        return None

    def required_metadata(self) -> dict[str, set[str]]:
        metadata: dict[str, set[str]] = {}
        for key in ("X-ConditionMachineMetadata", "MachineMetadata"):
            for pair in self.values.get(key, []):
                parts = pair.split("=")
                if len(parts) == 2 and parts[0] and parts[1]:
                    metadata.setdefault(parts[0], set()).add(parts[1])
        return metadata


def valid_unit_file_name(name: str) -> bool:
    """A name the agent may write into its units directory: a unit name of a type fleet recognises."""
    base, dot, kind = name.rpartition(".")
    return (bool(base) and bool(dot) and kind in RECOGNIZED_UNIT_TYPES and not name.startswith("@")
            and all(char in VALID_NAME_CHARS for char in base))


@dataclass
class Unit:
    """One unit of the registry: job/<name>/* and its unit file, as the engine and the agents see it."""

    name: str
    hash: str  # hex SHA1 of the serialised unit file (jobModel.UnitHash)
    raw: str  # the unit file as fleet stores it (unitFileModel.Raw)
    target_state: str  # job/<name>/target-state: the desired state
    target: str = ""  # job/<name>/target: where the engine scheduled it
    requirements: Requirements = field(default_factory=lambda: Requirements("", {}))

    @property
    def is_global(self) -> bool:
        return self.requirements.is_global()


# --- the registry in fleet's layout ----------------------------------------------------------------------

@dataclass
class Lease:
    """pkg/lease: who holds it, at which engine version, and the etcd index that proves it."""

    machine_id: str
    version: int
    index: int
    ttl: int


class Registry:
    """fleet's registry (registry/*.go, pkg/lease/etcd.go) over etcd's v2 keys API."""

    def __init__(self, etcd: Etcd, prefix: str):
        self.etcd = etcd
        self.prefix = prefix
        self._unit_files: dict[str, str] = {}  # hash -> Raw; unit/<hash> never changes (content-addressed)

    def key(self, *parts: str) -> str:
        parts = (self.prefix,) + parts
        return "/" + "/".join(part.strip("/") for part in parts if part.strip("/"))

    # --- machines ------------------------------------------------------------------------------------
    def set_machine_state(self, machine: Machine, ttl: int) -> str:
        """SetMachineState: update the registration, create it when missing; returns the endpoint."""
        model = {"ID": machine.id, "PublicIP": machine.public_ip, "Metadata": machine.metadata,
                 "Version": machine.version}
        value = json.dumps(model, separators=(",", ":"))
        key = self.key("machines", machine.id, "object")
        try:
            self.etcd.put(key, value, ttl=ttl, prev_exist=True)
            return self.etcd.last_server
        except EtcdFailure as exc:
            if exc.code != ETCD_KEY_NOT_FOUND:
                raise
        # Created apart from updated, as fleet does, so watchers see a new machine as a create.
        try:
            self.etcd.put(key, value, ttl=ttl, prev_exist=False)
        except EtcdFailure as exc:
            if exc.code != ETCD_NODE_EXIST:
                raise
            self.etcd.put(key, value, ttl=ttl, prev_exist=True)  # lost a race with our previous self
        return self.etcd.last_server

    def remove_machine_state(self, machine_id: str) -> None:
        self.etcd.delete(self.key("machines", machine_id, "object"))

    def machines(self) -> dict[str, Machine]:
        found = {}
        for node in leaves(self.etcd.get(self.key("machines"), recursive=True)):
            if not node["key"].endswith("/object"):
                continue
            try:
                model = json.loads(node["value"])
                machine = Machine(str(model["ID"]), model.get("PublicIP") or "", dict(model.get("Metadata") or {}),
                                  model.get("Version") or "")
            except (ValueError, KeyError, TypeError):
                continue
            found[machine.id] = machine
        return found

    # --- units ---------------------------------------------------------------------------------------
    def _unit_file(self, unit_hash: str) -> str | None:
        if unit_hash not in self._unit_files:
            node = self.etcd.get(self.key("unit", unit_hash))
            if node is None:
                return None
            try:
                self._unit_files[unit_hash] = str(json.loads(node["value"])["Raw"])
            except (ValueError, KeyError, TypeError):
                return None
        return self._unit_files[unit_hash]

    def units(self) -> list[Unit]:
        """Every unit with its object and unit file, sorted by name (registry.Units and Schedule)."""
        jobs = self.etcd.get(self.key("job"), recursive=True)
        found = []
        for directory in (jobs or {}).get("nodes", []):
            if not directory.get("dir"):
                continue
            values = {child["key"].rsplit("/", 1)[-1]: child.get("value", "")
                      for child in directory.get("nodes", []) if not child.get("dir")}
            if "object" not in values:
                continue
            try:
                model = json.loads(values["object"])
                name, unit_hash = str(model["Name"]), model["UnitHash"]
                unit_hash = bytes(unit_hash).hex()
            except (ValueError, KeyError, TypeError):
                continue
            raw = self._unit_file(unit_hash)
            if raw is None:
                continue  # registry.getUnitFromObjectNode: "No Unit found in Registry for Job"
            target_state = values.get("target-state", INACTIVE)
            if target_state not in JOB_STATES:
                continue
            found.append(Unit(name, unit_hash, raw, target_state, values.get("target", ""),
                              Requirements(name, x_fleet(raw))))
        return sorted(found, key=lambda unit: unit.name)

    def schedule_unit(self, name: str, machine_id: str) -> bool:
        """ScheduleUnit: create job/<name>/target; False when some other engine got there first."""
        try:
            self.etcd.put(self.key("job", name, "target"), machine_id, prev_exist=False)
        except EtcdFailure as exc:
            if exc.code == ETCD_NODE_EXIST:
                return False
            raise
        return True

    def unschedule_unit(self, name: str, machine_id: str) -> bool:
        """UnscheduleUnit: delete job/<name>/target if it still names that machine."""
        return self.etcd.delete(self.key("job", name, "target"), prev_value=machine_id)

    def unit_heartbeat(self, name: str, machine_id: str, ttl: int) -> None:
        self.etcd.put(self.key("job", name, "job-state"), machine_id, ttl=ttl)

    def clear_unit_heartbeat(self, name: str) -> None:
        self.etcd.delete(self.key("job", name, "job-state"))

    def save_unit_state(self, name: str, machine_id: str, model: Mapping, ttl: int) -> None:
        self.etcd.put(self.key("states", name, machine_id), json.dumps(model, separators=(",", ":")), ttl=ttl)

    def remove_unit_state(self, name: str, machine_id: str) -> None:
        self.etcd.delete(self.key("states", name, machine_id))

    # --- the engine's cluster version and lease ------------------------------------------------------
    def engine_version(self) -> int:
        node = self.etcd.get(self.key("engine", "version"))
        try:
            return int(node["value"]) if node else 0
        except ValueError:
            return 0

    def update_engine_version(self, old: int, new: int) -> None:
        try:
            self.etcd.put(self.key("engine", "version"), str(new), prev_value=str(old))
        except EtcdFailure as exc:
            if exc.code != ETCD_KEY_NOT_FOUND:
                raise
            self.etcd.put(self.key("engine", "version"), str(new), prev_exist=False)

    @staticmethod
    def _lease(node: dict) -> Lease:
        try:
            meta = json.loads(node["value"])
            machine_id, version = str(meta["MachineID"]), int(meta["Version"])
        except (ValueError, KeyError, TypeError):
            # engines that predate lease versions wrote the bare machine ID
            machine_id, version = node.get("value", ""), 0
        return Lease(machine_id, version, int(node["modifiedIndex"]), int(node.get("ttl", 0)))

    def get_lease(self, name: str) -> Lease | None:
        node = self.etcd.get(self.key("lease", name))
        return self._lease(node) if node else None

    def acquire_lease(self, name: str, machine_id: str, version: int, ttl: int) -> Lease | None:
        """Create the lease; None when another holds it."""
        value = json.dumps({"MachineID": machine_id, "Version": version}, separators=(",", ":"))
        try:
            return self._lease(self.etcd.put(self.key("lease", name), value, ttl=ttl, prev_exist=False))
        except EtcdFailure as exc:
            if exc.code == ETCD_NODE_EXIST:
                return None
            raise

    def renew_lease(self, name: str, lease: Lease, ttl: int) -> Lease | None:
        """Renew (or steal) the lease at its index; None when it changed hands or expired meanwhile."""
        value = json.dumps({"MachineID": lease.machine_id, "Version": lease.version}, separators=(",", ":"))
        try:
            return self._lease(self.etcd.put(self.key("lease", name), value, ttl=ttl, prev_index=lease.index))
        except EtcdFailure as exc:
            if exc.code in (ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED):
                return None
            raise

    def release_lease(self, name: str, lease: Lease) -> bool:
        return self.etcd.delete(self.key("lease", name), prev_index=lease.index)


# --- the engine (engine/engine.go, engine/reconciler.go, engine/scheduler.go) ------------------------------

def able_to_run(unit: Unit, machine: Machine, scheduled_there: Iterable[Unit]) -> tuple[bool, str]:
    """agent.AgentState.AbleToRun: MachineID, MachineMetadata, MachineOf and Conflicts against the units
    scheduled to the machine (the unit itself excepted)."""
    reqs = unit.requirements
    target = reqs.required_target()
    if target is not None and not machine.match_id(target):
        return False, "agent ID %s does not match required %s" % (machine.id, target)
    metadata = reqs.required_metadata()
    if metadata and not machine.has_metadata(metadata):
        return False, "local Machine metadata insufficient"
    others = [other for other in scheduled_there if other.name != unit.name]
    names = {other.name for other in others}
    for peer in reqs.peers():
        if peer not in names:
            return False, "required peer Unit(%s) is not scheduled locally" % peer
    for other in others:
        if any(go_path_match(pattern, other.name) for pattern in reqs.conflicts()) or \
                any(go_path_match(pattern, unit.name) for pattern in other.requirements.conflicts()):
            return False, "found conflict with locally-scheduled Unit(%s)" % other.name
    return True, ""


def least_loaded_able(unit: Unit, machines: Mapping[str, Machine], placed: Mapping[str, list[Unit]]) -> str | None:
    """leastLoadedScheduler.Decide: the machine with the fewest units (then the lowest ID) able to run the unit."""
    for machine_id in sorted(placed, key=lambda candidate: (len(placed[candidate]), candidate)):
        if able_to_run(unit, machines[machine_id], placed[machine_id])[0]:
            return machine_id
    return None


class Engine:
    """The cluster's scheduler; only the holder of lease/engine-leader acts."""

    def __init__(self, registry: Registry, machine_id: str, interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.machine_id = machine_id
        self.interval = interval
        self.lease_ttl = max(1, int(math.ceil(interval * LEASE_TTL_FACTOR)))
        self.clock = clock
        self.lease: Lease | None = None  # ours, while we lead
        self.leader = ""  # who leads, as last seen
        self.not_before = 0.0  # after a steal: the previous leader's lease must run out first
        self.problems = LogOnce("engine")

    @property
    def is_leader(self) -> bool:
        return self.lease is not None and self.lease.machine_id == self.machine_id

    def tick(self) -> list[str]:
        """One round: check the cluster's engine version, lead if possible, and reconcile when leading.

        Returns what the reconciliation did (for tests and logs); [] when not leading."""
        try:
            if not self._version_ok():
                return []
            self._lead()
            if not self.is_leader or self.clock() < self.not_before:
                self.problems.ok()
                return []
            done = self.reconcile()
        except EtcdFailure as exc:
            self.problems.failed(str(exc))
            return []
        self.problems.ok()
        return done

    def _version_ok(self) -> bool:
        """engine.ensureEngineVersionMatch: raise the cluster's engine version to ours; never run under a newer one."""
        version = self.registry.engine_version()
        if version < ENGINE_VERSION:
            self.registry.update_engine_version(version, ENGINE_VERSION)
            log("INFO", "engine: updated cluster engine version from %d to %d" % (version, ENGINE_VERSION))
        elif version > ENGINE_VERSION:
            self.problems.failed("cluster engine version %d is above this engine's %d; not taking part"
                                 % (version, ENGINE_VERSION))
            return False
        return True

    def _lead(self) -> None:
        """Renew our lease, or take it (engine.acquireLeadership); log every change of leader once."""
        if self.is_leader:
            renewed = self.registry.renew_lease(ENGINE_LEASE, self.lease, self.lease_ttl)
            if renewed is None:
                log("WARN", "engine: leadership lost: the lease was no longer ours to renew")
            self.lease = renewed
            if renewed is not None:
                return
        existing = self.registry.get_lease(ENGINE_LEASE)
        if existing is None:
            self.lease = self.registry.acquire_lease(ENGINE_LEASE, self.machine_id, ENGINE_VERSION, self.lease_ttl)
        elif existing.machine_id == self.machine_id:
            # Our own lease, e.g. after a renewal whose answer was lost: take it up again.
            self.lease = self.registry.renew_lease(ENGINE_LEASE, existing, self.lease_ttl)
        elif existing.version < ENGINE_VERSION:
            stolen = Lease(self.machine_id, ENGINE_VERSION, existing.index, existing.ttl)
            self.lease = self.registry.renew_lease(ENGINE_LEASE, stolen, self.lease_ttl + existing.ttl)
            if self.lease is not None:
                log("INFO", "engine: stole engine leadership from %s (engine version %d)"
                    % (existing.machine_id, existing.version))
                self.not_before = self.clock() + existing.ttl
        else:
            self.lease = None
        leader = self.machine_id if self.is_leader else (existing.machine_id if existing else "")
        if leader != self.leader:
            if leader == self.machine_id:
                log("INFO", "engine: leadership acquired (%s, TTL %ds, renewed every %gs)"
                    % (self.registry.key("lease", ENGINE_LEASE), self.lease_ttl, self.interval))
            elif leader:
                log("INFO", "engine: leader is %s" % leader)
            self.leader = leader

    def reconcile(self) -> list[str]:
        """Reconciler.calculateClusterTasks and doTask: unschedule what must go, then schedule what waits."""
        machines = self.registry.machines()
        units = [unit for unit in self.registry.units() if not unit.is_global]
        placed: dict[str, list[Unit]] = {machine_id: [] for machine_id in machines}
        for unit in units:
            if unit.target in placed:
                placed[unit.target].append(unit)
        done = []
        for unit in units:
            if not unit.target:
                continue
            reason = ""
            if unit.target_state == INACTIVE:
                reason = "target state inactive"
            elif unit.target not in machines:
                reason = "target Machine(%s) went away" % unit.target
            else:
                able, why = able_to_run(unit, machines[unit.target], placed[unit.target])
                if not able:
                    reason = "target Machine(%s) unable to run unit: %s" % (unit.target, why)
            if not reason:
                continue
            if self.registry.unschedule_unit(unit.name, unit.target):
                log("INFO", "engine: unscheduled %s from machine %s: %s" % (unit.name, unit.target, reason))
                done.append("unschedule %s %s" % (unit.name, unit.target))
            if unit.target in placed:
                placed[unit.target] = [other for other in placed[unit.target] if other.name != unit.name]
            unit.target = ""
        for unit in units:
            if unit.target or unit.target_state == INACTIVE:
                continue
            machine_id = least_loaded_able(unit, machines, placed)
            if machine_id is None:
                continue  # stays unscheduled until a machine is able to run it
            if self.registry.schedule_unit(unit.name, machine_id):
                log("INFO", "engine: scheduled %s to machine %s (target state %s)"
                    % (unit.name, machine_id, unit.target_state))
                done.append("schedule %s %s" % (unit.name, machine_id))
                unit.target = machine_id
                placed[machine_id].append(unit)
        return done

    def purge(self) -> None:
        """Engine.Purge: give the lease up, so another engine leads at once."""
        if self.is_leader:
            try:
                if self.registry.release_lease(ENGINE_LEASE, self.lease):
                    log("INFO", "engine: released the engine lease")
                else:
                    log("INFO", "engine: the engine lease was no longer ours to release")
            except EtcdFailure as exc:
                log("ERROR", "engine: failed to release the engine lease: %s" % exc)
        self.lease = None


# --- the agent (agent/agent.go, agent/reconcile.go, agent/unit_state.go, systemd/manager.go) ---------------

Runner = Callable[[list[str]], "tuple[int, str, str]"]


def subprocess_runner(systemctl: str, timeout: float = SYSTEMCTL_TIMEOUT) -> Runner:
    """Run `systemctl ARGS...` and return (exit status, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            done = subprocess.run([systemctl, *args], capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, "", str(exc)
        return done.returncode, done.stdout, done.stderr

    return run


class Systemd:
    """The systemctl calls of fleet's systemd unit manager; `run` is injectable (tests pass a fake)."""

    PROPERTIES = ("LoadState", "ActiveState", "SubState")

    def __init__(self, run: Runner):
        self.run = run

    def states(self, names: list[str]) -> dict[str, tuple[str, str, str]]:
        """LoadState, ActiveState and SubState of each unit, from one `systemctl show` (one per unit as a fallback)."""
        if not names:
            return {}
        blocks = self._show(names)
        if len(blocks) != len(names):
            blocks = [next(iter(self._show([name])), {}) for name in names]
        return {name: (block.get("LoadState", ""), block.get("ActiveState", ""), block.get("SubState", ""))
                for name, block in zip(names, blocks)}

    def _show(self, names: list[str]) -> list[dict[str, str]]:
        code, out, _err = self.run(["show", "--property=" + ",".join(self.PROPERTIES), "--", *names])
        if code != 0:
            return []
        blocks = []
        for text in out.strip("\n").split("\n\n"):
            block = {}
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    block[key] = value
            blocks.append(block)
        return blocks


class Agent:
    """Runs on every machine the units the registry assigns to it, and reports what systemd makes of them."""

    def __init__(self, registry: Registry, machine: Machine, units_dir: str, systemd: Systemd, ttl: int,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.machine = machine
        self.units_dir = units_dir
        self.systemd = systemd
        self.ttl = ttl
        self.clock = clock
        # agentCache: the state this agent brought each unit to (loaded or launched); empty after a restart.
        self.cache: dict[str, str] = {}
        # systemd manager's hashes: the hash of each unit file in units_dir.
        self.hashes: dict[str, str] = self._scan_units_dir()
        self.published: dict[str, tuple[dict, float]] = {}  # unit -> (state model, when)
        self.beats: dict[str, float] = {}  # launched unit -> when its heartbeat was last written
        self.problems = LogOnce("agent")
        self.refused: set[str] = set()

    def _scan_units_dir(self) -> dict[str, str]:
        """hashUnitFiles: the files a previous run left (the file is the serialised unit, so its SHA1 is its hash)."""
        found = {}
        try:
            names = sorted(os.listdir(self.units_dir))
        except OSError:
            return found
        for name in names:
            if not valid_unit_file_name(name):
                continue
            try:
                with open(os.path.join(self.units_dir, name), "rb") as handle:
                    found[name] = hashlib.sha1(handle.read()).hexdigest()
            except OSError:
                continue
        return found

    # --- one round -----------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Bring this machine's units to their desired states and publish what systemd says; the tasks done."""
        try:
            desired = self.desired_units()
        except EtcdFailure as exc:
            self.problems.failed(str(exc))
            return []
        done = self.apply(self.tasks(desired), desired)
        try:
            self.publish_states()
            self.refresh_heartbeats()
        except EtcdFailure as exc:
            self.problems.failed(str(exc))
            return done
        self.problems.ok()
        return done

    def desired_units(self) -> dict[str, Unit]:
        """desiredAgentState: units scheduled here, and global units whose metadata this machine has."""
        desired = {}
        for unit in self.registry.units():
            if unit.is_global:
                if not self.machine.has_metadata(unit.requirements.required_metadata()):
                    continue
            elif unit.target != self.machine.id:
                continue
            if not valid_unit_file_name(unit.name):
                if unit.name not in self.refused:
                    log("ERROR", "agent: not loading %s: not a unit name fleet runs" % unit.name)
                    self.refused.add(unit.name)
                continue
            desired[unit.name] = unit
        return desired

    def tasks(self, desired: Mapping[str, Unit]) -> list[tuple[str, str]]:
        """calculateTasksForUnits: (task, unit) pairs in the order fleet runs them."""
        unload, load, start, stop = [], [], [], []
        for name in sorted(set(desired) | set(self.hashes)):
            unit = desired.get(name)
            current = self.cache.get(name, INACTIVE) if name in self.hashes else None
            if unit is None or unit.target_state == INACTIVE:
                if current is not None:
                    unload.append(name)
                continue
            if current is None or self.hashes[name] != unit.hash:
                if current is not None:
                    unload.append(name)  # the hash differs: unload the old unit, then load the new one
                load.append(name)
                if unit.target_state == LAUNCHED:
                    start.append(name)
                continue
            if current == unit.target_state:
                continue
            if current == INACTIVE:
                load.append(name)
            if current in (INACTIVE, LOADED) and unit.target_state == LAUNCHED:
                start.append(name)
            if current == LAUNCHED and unit.target_state == LOADED:
                stop.append(name)
        reload = [("reload", "")] if unload or load else []
        return ([("unload", name) for name in unload] + [("load", name) for name in load] + reload
                + [("start", name) for name in start] + [("stop", name) for name in stop])

    def apply(self, tasks: list[tuple[str, str]], desired: Mapping[str, Unit]) -> list[str]:
        done = []
        for task, name in tasks:
            try:
                if task == "unload":
                    self.unload(name)
                elif task == "load":
                    self.load(desired[name])
                elif task == "reload":
                    self.reload()
                elif task == "start":
                    self.start(name)
                else:
                    self.stop(name)
            except (EtcdFailure, OSError) as exc:
                log("ERROR", "agent: %s %s: %s" % (task, name or "unit files", exc))
                continue
            done.append(("%s %s" % (task, name)).strip())
        return done

    # --- tasks ---------------------------------------------------------------------------------------
    def _systemctl(self, what: str, *args: str, tolerate: tuple[int, ...] = ()) -> bool:
        code, out, err = self.systemd.run(list(args))
        if code == 0 or code in tolerate:
            return True
        said = err.strip() or out.strip() or "exit status %d" % code
        log("ERROR", "agent: %s: systemctl %s: %s" % (what, " ".join(args), said))
        return False

    def unload(self, name: str, withdraw: bool = True) -> None:
        """Agent.unloadUnit: stop, then unlink and remove the file only if stopping worked (fleet issue 1216);
        then withdraw its heartbeat and state. systemd comes first: a purge must stop units even when etcd
        cannot be reached (their heartbeats and states then expire with their TTL)."""
        self.cache.pop(name, None)
        self.beats.pop(name, None)
        stopped = self._systemctl("unload " + name, "stop", "--no-block", name, tolerate=(SYSTEMCTL_NOT_LOADED,))
        if stopped:
            self._systemctl("unload " + name, "disable", "--runtime", "--no-reload", name, tolerate=(1,))
            self._systemctl("unload " + name, "reset-failed", name, tolerate=(1, SYSTEMCTL_NOT_LOADED))
            try:
                os.remove(os.path.join(self.units_dir, name))
            except FileNotFoundError:
                pass
            self.hashes.pop(name, None)
            self.published.pop(name, None)
            log("INFO", "agent: unloaded %s" % name)
        if withdraw:
            self.registry.clear_unit_heartbeat(name)
            if stopped:
                self.registry.remove_unit_state(name, self.machine.id)

    def load(self, unit: Unit) -> None:
        """Agent.loadUnit and the unit manager's Load: the unit file under units_dir, linked into systemd."""
        os.makedirs(self.units_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self.units_dir, unit.name)
        temporary = os.path.join(self.units_dir, ".%s.new" % unit.name)
        with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(unit.raw)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
        self.hashes[unit.name] = unit.hash
        self.cache[unit.name] = LOADED
        # --no-reload: one daemon-reload follows all loads and unloads of a round (fleet links over D-Bus,
        # which does not reload either).
        self._systemctl("load " + unit.name, "link", "--runtime", "--force", "--no-reload", path)
        log("INFO", "agent: loaded %s (hash %s) from %s" % (unit.name, unit.hash[:7], path))

    def reload(self) -> None:
        self._systemctl("reload unit files", "daemon-reload")

    def start(self, name: str) -> None:
        """Agent.startUnit: record it launched, beat for it, and ask systemd to start it (not waiting)."""
        self.cache[name] = LAUNCHED
        self.registry.unit_heartbeat(name, self.machine.id, self.ttl)
        self.beats[name] = self.clock()
        if self._systemctl("start " + name, "start", "--no-block", name):
            log("INFO", "agent: started %s" % name)

    def stop(self, name: str) -> None:
        """Agent.stopUnit."""
        self.cache[name] = LOADED
        self.registry.clear_unit_heartbeat(name)
        self.beats.pop(name, None)
        if self._systemctl("stop " + name, "stop", "--no-block", name, tolerate=(SYSTEMCTL_NOT_LOADED,)):
            log("INFO", "agent: stopped %s" % name)

    # --- reports -------------------------------------------------------------------------------------
    def state_model(self, name: str, state: tuple[str, str, str]) -> dict:
        """registry unitStateModel as Go marshals it; machineState is MachineState{ID} (unitStateToModel)."""
        return {"loadState": state[0], "activeState": state[1], "subState": state[2],
                "machineState": {"ID": self.machine.id, "PublicIP": "", "Metadata": None, "Version": ""},
                "unitHash": self.hashes.get(name, "")}

    def publish_states(self) -> None:
        """UnitStatePublisher: each loaded unit's state when it changes, refreshed every TTL/2 (TTL agent_ttl)."""
        names = sorted(name for name in self.cache if name in self.hashes)
        now = self.clock()
        for name, state in self.systemd.states(names).items():
            model = self.state_model(name, state)
            last = self.published.get(name)
            if last is not None and last[0] == model and now - last[1] < self.ttl / 2.0:
                continue
            self.registry.save_unit_state(name, self.machine.id, model, self.ttl)
            if last is None or last[0] != model:
                log("INFO", "agent: %s is %s/%s/%s" % (name, state[0], state[1], state[2]))
            self.published[name] = (model, now)

    def refresh_heartbeats(self) -> None:
        """Agent.heartbeatJobs: job-state of every launched unit, every TTL/2."""
        now = self.clock()
        for name, state in sorted(self.cache.items()):
            if state == LAUNCHED and now - self.beats.get(name, -math.inf) >= self.ttl / 2.0:
                self.registry.unit_heartbeat(name, self.machine.id, self.ttl)
                self.beats[name] = now

    def purge(self) -> None:
        """AgentReconciler.Purge and UnitStatePublisher.Purge: stop and unload every unit this agent loaded."""
        names = sorted(set(self.cache) | set(self.hashes))
        reachable = True  # once etcd is found unreachable, stop asking it: systemd must not wait on it
        for name in names:
            try:
                self.unload(name, withdraw=reachable)
            except EtcdFailure as exc:
                log("ERROR", "agent: unload %s: %s" % (name, exc))
                reachable = exc.code is not None
            except OSError as exc:
                log("ERROR", "agent: unload %s: %s" % (name, exc))
        if names:
            self.reload()


# --- fleet.socket ----------------------------------------------------------------------------------------

API_ANSWER = json.dumps({"error": {"code": 503, "message": "fleet API not available: this fleetd is the "
                                   "sandbox's stand-in, which serves no API; use fleetctl --driver=etcd or the "
                                   "sandbox's fleetctl double"}}).encode()


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

def this_machine(config: Config, machine_id: str) -> Machine:
    return Machine(machine_id, config.public_ip or default_route_ip(config.proc_net_route), dict(config.metadata),
                   VERSION)


def heartbeat_loop(config: Config, stop: threading.Event, machine_id: str | None = None,
                   now: Callable[[], float] = time.monotonic) -> None:
    """Keep this machine registered until stop is set; log each change of state once, not each try."""
    registry = Registry(Etcd(config.etcd_servers, config.etcd_request_timeout), config.etcd_key_prefix)
    interval = config.agent_ttl / 2.0  # server/heartbeat.go beats at TTL/2
    retry = min(1.0, interval)
    state = ""
    while not stop.is_set():
        started = now()
        try:
            machine = this_machine(config, machine_id or read_machine_id(config.machine_id_file))
            server = registry.set_machine_state(machine, config.agent_ttl)
        except (EtcdFailure, ConfigError) as exc:
            if str(exc) != state:
                log("ERROR", "%s; retrying every %gs" % (exc, retry))
                state = str(exc)
            stop.wait(retry)
            continue
        new_state = "registered %s %s at %s" % (machine.id, machine.public_ip, server)
        if new_state != state:
            log("INFO", "registered machine %s (public IP %s, metadata %s) at %s%s with TTL %ds, refreshed every %gs"
                % (machine.id, machine.public_ip or "-",
                   ",".join("%s=%s" % item for item in config.metadata.items()) or "-",
                   server, registry.key("machines", machine.id, "object"), config.agent_ttl, interval))
            state = new_state
        stop.wait(max(0.0, interval - (now() - started)))


def periodic(name: str, interval: float, step: Callable[[], object], stop: threading.Event,
             now: Callable[[], float] = time.monotonic) -> None:
    """Run step every interval seconds until stop is set; an unexpected error is logged, not fatal."""
    while not stop.is_set():
        started = now()
        try:
            step()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # a bug must not end the loop silently
            log("ERROR", "%s: unexpected %s: %s" % (name, type(exc).__name__, exc))
        stop.wait(max(0.0, interval - (now() - started)))


def wait_for_machine_id(config: Config, stop: threading.Event) -> str | None:
    """This machine's ID, retried every second while it cannot be read; None when told to stop first."""
    problem = ""
    while not stop.is_set():
        try:
            return read_machine_id(config.machine_id_file)
        except ConfigError as exc:
            if str(exc) != problem:
                log("ERROR", "%s; retrying every 1s" % exc)
                problem = str(exc)
        stop.wait(1.0)
    return None


def serve(config: Config, stop: threading.Event, run: Runner | None = None) -> None:
    """fleetd's server: registration, agent and (unless disabled) engine until stop is set, then Purge."""
    machine_id = wait_for_machine_id(config, stop)
    if machine_id is None:
        return
    systemd = Systemd(run or subprocess_runner(config.systemctl))

    def registry() -> Registry:
        return Registry(Etcd(config.etcd_servers, config.etcd_request_timeout), config.etcd_key_prefix)

    agent = Agent(registry(), this_machine(config, machine_id), config.units_dir, systemd, config.agent_ttl)
    engine = Engine(registry(), machine_id, config.engine_reconcile_interval)
    threads = [threading.Thread(target=heartbeat_loop, args=(config, stop, machine_id), name="heartbeat"),
               threading.Thread(target=periodic, args=("agent", config.agent_interval, agent.tick, stop),
                                name="agent")]
    if config.disable_engine:
        log("INFO", "engine disabled (disable_engine): this machine never schedules units")
    else:
        threads.append(threading.Thread(target=periodic,
                                        args=("engine", config.engine_reconcile_interval, engine.tick, stop),
                                        name="engine"))
    log("INFO", "agent: units in %s, loop every %gs; engine: reconcile every %gs (lease TTL %ds)"
        % (config.units_dir, config.agent_interval, config.engine_reconcile_interval, engine.lease_ttl))
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=SYSTEMCTL_TIMEOUT + 10)
    # server.Purge: the agent's units, its states, the engine's lease, then the machine's registration.
    agent.purge()
    engine.purge()
    try:
        registry().remove_machine_state(machine_id)
        log("INFO", "removed machine %s from the registry" % machine_id)
    except EtcdFailure as exc:
        log("ERROR", "failed to remove machine %s from the registry (it expires with its TTL): %s" % (machine_id, exc))


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
        log("INFO", "received %s: gracefully shutting down (units stopped and unloaded, lease released, "
            "machine removed from the registry, as fleetd's Purge does)" % signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    for listener in activated_sockets(env):
        threading.Thread(target=serve_api_socket, args=(listener, stop), daemon=True).start()
    serve(config, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
