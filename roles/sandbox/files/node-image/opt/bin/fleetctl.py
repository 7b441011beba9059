# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetctl TEST DOUBLE for this collection's tests. This is not fleet and not fleetctl.

The test nodes and the sandbox's nodes get this stand-in under the name `fleetctl`. It copies the
command line and the output of fleetctl v1.0.0 (coreos/fleet, fleetctl/*.go at the cobra-based v1.0
tree) closely enough that code driving fleetctl can be tested against it, and it keeps fleet's registry
layout in etcd, so tests can check the state of the world in etcd itself, and so that it works beside a
fleetd (the sandbox nodes' stand-in, /opt/bin/fleetd, or a real one) as fleetctl does.

What it implements
  * Global flags --endpoint --driver --tunnel --ssh-username --ssh-timeout --strict-host-key-checking
    --known-hosts-file --request-timeout --etcd-key-prefix --key-file --cert-file --ca-file --debug
    --version --help (and the deprecated --experimental-api --etcd-keyfile --etcd-certfile
    --etcd-cafile), each also read from FLEETCTL_<FLAG> (upper case, '-' -> '_') when not given on the
    command line. As in fleetctl, only these global flags are read from the environment.
  * Commands submit, load, start (--replace, --no-block, --block-attempts), stop, unload,
    destroy (--no-block, --block-attempts), cat, list-unit-files, list-units, list-machines
    (--fields, --full/-l, --no-legend; list-unit-files also --max-print-units), status, journal,
    version, help; unique command prefixes are accepted, as cobra does with prefix matching on.
  * fleetctl's messages, exit codes and output: columns through a copy of Go's text/tabwriter with
    fleetctl's settings (tab padding, so columns are separated by one or more tabs), upper-case legend,
    '-' for empty values, 7-character hashes and 'abcdef12.../10.0.0.1' machines unless --full.
  * Unit files parsed and re-serialised as go-systemd does; the unit hash is SHA1 of that
    serialisation, as in fleet's unit/unit.go. Templates, instances created from a template in the
    registry or on disk, unit name mangling (a name without a known type gets '.service').
  * The registry in etcd's v2 keys API, in fleet's layout under --etcd-key-prefix
    (default /_coreos.com/fleet/):
      job/<name>/object        {"Name": ..., "UnitHash": [20 bytes]}
      job/<name>/target-state  inactive | loaded | launched       (desired state)
      job/<name>/target        machine ID the unit is scheduled to
      job/<name>/job-state     machine ID, set while the unit is launched there (agent heartbeat)
      unit/<sha1>              {"Raw": "<serialised unit file>"}
      states/<name>/<machine>  {"loadState", "activeState", "subState", "machineState", "unitHash"}
      machines/<id>/object     {"ID", "PublicIP", "Metadata", "Version"}
      engine/version           the cluster's engine version, written by fleetd's engines ("1")
      lease/engine-leader      {"MachineID", "Version"}, held (with a TTL) by the leading engine
    fleet's rules derive each unit's current state from these keys (registry/job_state.go).

With a fleetd and without one
  * Where a fleetd runs (an engine has written engine/version or holds lease/engine-leader, as fleetd's
    engines do, the sandbox's stand-in and a real one alike), the double does what fleetctl does: it
    writes units and desired states only, and the engine and the agents do the rest; start, stop, load
    and unload wait for the state the agents report (--block-attempts N tries, 0 for no limit, half a
    second apart) unless --no-block; list-units and status show the states the agents published.
  * Where none runs (the test nodes: no engine key in the registry), the double also plays engine and
    agents whenever it changes the registry: it schedules units (fewest units first, ties by machine
    ID; honouring X-Fleet MachineID, MachineOf, MachineMetadata, Conflicts and Global) and writes the
    states the agents would report, so the current state equals the desired state at once. A unit no
    machine can take stays without target and 'inactive', as in fleet; it is scheduled when a machine
    registers.

How it differs from fleet
  * It always talks to etcd directly over HTTP (whatever --driver says): to the --endpoint URL(s)
    when they are http(s)://, otherwise to FLEETCTL_DOUBLE_ETCD (comma-separated URLs, default
    http://127.0.0.1:2379). --tunnel and the SSH flags are accepted and ignored.
  * status prints a short systemctl-like status of the state the unit's agent reported (exit 3 when
    not active, as systemctl status does); journal prints a note on stderr and nothing on stdout.
  * Usage errors (unknown command or flag, bad flag value) exit 2. fleetctl 1.0.0 prints cobra's
    error and exits with its unset command status, 0; a double that accepted mistakes silently would
    hide them.
  * Replacing a unit (--replace) stores the new unit under the same name and sets its desired state
    to inactive before load/start set it again: what fleetctl's waiting for 'inactive' after creating
    a unit, and fleet's functional tests of --replace, imply of the server side.
  * Not implemented: the fleet HTTP API, the commands ssh, fd-forward, verify and restart, --sign
    (accepted and ignored, as 1.0.0 does), machine resources, MachineMetadata comparison operators,
    fleetd's version check, several units polled in parallel (the double reports them in argument
    order); without a fleetd, rescheduling at the moment a machine's registration expires (it happens
    at the next command that changes the registry).

Double-only commands and settings (not in fleetctl; the node harness uses them):
  fleetctl register-machine [--ip ADDR] [--metadata k=v,k2=v2] [--ttl SECONDS] [--keep-alive]
      registers this machine (ID read from FLEETCTL_DOUBLE_MACHINE_ID_FILE, default /etc/machine-id)
      at machines/<id>/object, with an etcd TTL when --ttl > 0; --keep-alive stays in the foreground
      and refreshes it every TTL/3 seconds until SIGTERM/SIGINT, then removes it.
  fleetctl unregister-machine
      removes this machine's registration; its units are rescheduled.
  (Both are for registries without a fleetd: the machines they register run no agent.)
  FLEETCTL_DOUBLE_ETCD              etcd URL(s) when --endpoint is not http(s)://
  FLEETCTL_DOUBLE_MACHINE_ID_FILE   file holding this machine's ID (default /etc/machine-id)

Python 3 standard library only, one file, so it can be copied onto a node as is.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import posixpath
import re
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

CLI_NAME = "fleetctl"
VERSION = "1.0.0"
DEFAULT_ENDPOINT = "unix:///var/run/fleet.sock"
DEFAULT_KEY_PREFIX = "/_coreos.com/fleet/"
DEFAULT_DOUBLE_ETCD = "http://127.0.0.1:2379"
DEFAULT_MACHINE_ID_FILE = "/etc/machine-id"
SLEEP_BETWEEN_ATTEMPTS = 0.5  # fleetctl.go defaultSleepTime

INACTIVE, LOADED, LAUNCHED = "inactive", "loaded", "launched"
JOB_STATES = (INACTIVE, LOADED, LAUNCHED)

# fleetctl/list_unit_files.go, list_units.go, list_machines.go
DEFAULT_LIST_UNIT_FILES_FIELDS = "unit,hash,dstate,state,target"
DEFAULT_LIST_UNITS_FIELDS = "unit,machine,active,sub"
DEFAULT_LIST_MACHINES_FIELDS = "machine,ip,metadata"


class CommandError(Exception):
    """A failure reported with fleetctl's wording; str() is the message after the caller's prefix."""


class UsageError(Exception):
    """A command line fleetctl's flag parser would reject."""


def stdout(text: str) -> None:
    """fleetctl's stdout(): the text plus a newline unless it already ends with one."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def stderr(text: str) -> None:
    """fleetctl's stderr(): the text plus a newline unless it already ends with one."""
    sys.stdout.flush()
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def go_quote(text: str) -> str:
    """Go's %q for a string, for messages that use it (printable non-ASCII stays as is)."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\x%02x" % ord(char))
        elif not char.isprintable():
            out.append("\\u%04x" % ord(char) if ord(char) <= 0xFFFF else "\\U%08x" % ord(char))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def go_quote_rune(char: str) -> str:
    """Go's %q for a rune."""
    return "'" + ("\\'" if char == "'" else go_quote(char)[1:-1]) + "'"


# Go's unicode.IsSpace, which strings.TrimSpace and go-systemd's lexer use (str.isspace also
# counts \x1c-\x1f).
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                      "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def go_trim_space(text: str) -> str:
    start, end = 0, len(text)
    while start < end and text[start] in _GO_SPACE:
        start += 1
    while end > start and text[end - 1] in _GO_SPACE:
        end -= 1
    return text[start:end]


def go_path_join(*parts: str) -> str:
    """Go's path.Join: join the non-empty parts and Clean the result."""
    joined = "/".join(part for part in parts if part)
    return posixpath.normpath(joined) if joined else ""


def go_path_dir(path: str) -> str:
    """Go's path.Dir."""
    directory = path[:path.rfind("/") + 1]
    return posixpath.normpath(directory) if directory else "."


def go_path_base(path: str) -> str:
    """Go's path.Base."""
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path[path.rfind("/") + 1:]


def go_path_match(pattern: str, name: str) -> bool:
    """Go's path.Match ('*' and '?' never match '/'); a malformed pattern matches nothing."""
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


def go_parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which pflag uses for boolean flags."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError('strconv.ParseBool: parsing %s: invalid syntax' % go_quote(value))


def go_os_error(op: str, path: str, exc: OSError) -> str:
    """An os.PathError as Go prints it, e.g. 'stat x.service: no such file or directory'."""
    reason = exc.strerror or str(exc)
    return "%s %s: %s" % (op, path, reason[:1].lower() + reason[1:])


# --------------------------------------------------------------------------------------------------
# Unit files, as go-systemd's unit package parses and serialises them (fleet's unit/unit.go hashes
# the serialisation, so a comment or extra blank line does not change a unit's hash).
# --------------------------------------------------------------------------------------------------

class UnitFileError(Exception):
    """go-systemd's Deserialize refused the text."""


def deserialize_unit(raw: str) -> list[tuple[str, str, str]]:
    """(section, name, value) options of a unit file, as go-systemd's unit.Deserialize lexes them.

    Same rules as the go-systemd version fleet vendored: '#' and ';' start comments, a line ending in
    a backslash continues the value (joined with a space), names and values are trimmed, text before
    the first section is skipped.
    """
    pos, size = 0, len(raw)
    options: list[tuple[str, str, str]] = []

    def to_eol() -> str:
        # go-systemd trims '\r' before '\n', so a CR survives on every line but the last one.
        nonlocal pos
        end = raw.find("\n", pos)
        if end != -1:
            line, pos = raw[pos:end], end + 1
            return line
        line, pos = raw[pos:], size
        return line[:-1] if line.endswith("\r") else line

    def ignore_line() -> None:
        while True:
            line = to_eol()
            if line.endswith(" "):
                line = line[:-1]
            if not line.endswith("\\") or pos >= size:
                return

    section = None
    while pos < size:
        char = raw[pos]
        pos += 1
        if section is not None and char in _GO_SPACE:
            continue
        if char == "[":
            end = raw.find("]", pos)
            if end == -1:
                raise UnitFileError("unable to find end of section")
            section = raw[pos:end]
            pos = end + 1
            garbage = go_trim_space(to_eol())
            if garbage:
                # go-systemd prints its (never set) lexer.section and the bytes as a Go slice.
                raise UnitFileError("found garbage after section name : [%s]"
                                    % " ".join(str(b) for b in garbage.encode("utf-8", "surrogateescape")))
            continue
        if char in "#;":
            ignore_line()
            continue
        if section is None:
            continue
        start = pos - 1
        while True:
            if pos >= size:
                raise UnitFileError("EOF")
            if raw[pos] in "\r\n":
                raise UnitFileError("unexpected newline encountered while parsing option name")
            if raw[pos] == "=":
                break
            pos += 1
        name = go_trim_space(raw[start:pos])
        pos += 1
        value = []
        while True:
            line = to_eol()
            if line.endswith("\\"):
                value.append(line[:-1] + " ")
                if pos < size:
                    continue
            else:
                value.append(line)
            break
        options.append((section, name, go_trim_space("".join(value))))
    return options


def serialize_unit(options: list[tuple[str, str, str]]) -> str:
    """go-systemd's unit.Serialize: sections in order of first appearance, options grouped under
    their section in their order, 'Name=Value' lines, one blank line between sections."""
    order: list[str] = []
    grouped: dict[str, list[tuple[str, str]]] = {}
    for section, name, value in options:
        if section not in grouped:
            order.append(section)
            grouped[section] = []
        grouped[section].append((name, value))
    blocks = []
    for section in order:
        lines = ["[%s]\n" % section] + ["%s=%s\n" % option for option in grouped[section]]
        blocks.append("".join(lines))
    return "\n".join(blocks)


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


class UnitFile:
    """A parsed unit file; equal hashes mean equal units, as in fleet."""

    def __init__(self, options: list[tuple[str, str, str]]):
        self.options = options
        self.contents: dict[str, dict[str, list[str]]] = {}
        for section, name, value in options:
            values = parse_multivalue_line(value) if section == "X-Fleet" else [value]
            self.contents.setdefault(section, {}).setdefault(name, []).extend(values)

    @classmethod
    def parse(cls, raw: str) -> "UnitFile":
        return cls(deserialize_unit(raw))

    def serialize(self) -> str:
        return serialize_unit(self.options)

    def hash(self) -> str:
        return hashlib.sha1(self.serialize().encode("utf-8", "surrogateescape")).hexdigest()

    def description(self) -> str:
        values = self.contents.get("Unit", {}).get("Description", [])
        return values[0] if values else ""


def read_error(path: str, exc: OSError) -> str:
    """ioutil.ReadFile's error: a directory opens fine in Go and fails on read."""
    return go_os_error("read" if exc.errno == errno.EISDIR else "open", path, exc)


def read_unit_file(path: str) -> UnitFile:
    """fleetctl's getUnitFromFile; raises OSError or UnitFileError."""
    with open(path, "rb") as handle:
        return UnitFile.parse(handle.read().decode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------------------------------
# Unit names and [X-Fleet] requirements (fleet's unit/unit.go, job/job.go, api/units.go)
# --------------------------------------------------------------------------------------------------

RECOGNIZED_UNIT_TYPES = ("service", "socket", "timer", "path", "device", "mount", "automount")
VALID_UNIT_TYPES = ("service", "socket", "busname", "target", "snapshot", "device", "mount", "automount",
                    "swap", "timer", "path", "slice", "scope")
VALID_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@")
VALID_REQUIREMENTS = ("MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID", "X-ConditionMachineOf",
                      "MachineOf", "X-Conflicts", "Conflicts", "X-ConditionMachineMetadata", "MachineMetadata",
                      "Global")


def maybe_append_default_unit_type(arg: str) -> str:
    if any(arg.endswith("." + kind) for kind in RECOGNIZED_UNIT_TYPES):
        return arg
    return arg + ".service"


def unit_name_mangle(arg: str) -> str:
    """fleetctl's unitNameMangle: the base name, with '.service' when it has no known type."""
    return maybe_append_default_unit_type(go_path_base(arg))


@dataclass
class UnitNameInfo:
    full_name: str
    name: str
    prefix: str
    template: str = ""
    instance: str = ""

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def is_template(self) -> bool:
        return bool(self.template) and not self.is_instance


def unit_name_info(unit_name: str) -> UnitNameInfo | None:
    dot = unit_name.rfind(".")
    if dot == -1:
        return None
    name, suffix = unit_name[:dot], unit_name[dot:]
    at = name.find("@")
    if at == -1:
        return UnitNameInfo(unit_name, name, name)
    return UnitNameInfo(unit_name, name, name[:at], "%s@%s" % (name[:at], suffix), name[at + 1:])


def validate_name(name: str) -> None:
    """api.ValidateName (systemd's unit_name_is_valid)."""
    if not name:
        raise CommandError("unit name cannot be empty")
    if len(name) > 256:
        raise CommandError("unit name exceeds maximum length (256)")
    dot = name.rfind(".")
    if dot == -1:
        raise CommandError('unit name must contain "."')
    if dot == len(name) - 1:
        raise CommandError('unit name cannot end in "."')
    if name[dot + 1:] not in VALID_UNIT_TYPES:
        raise CommandError("invalid unit type: %s" % go_quote(name[dot + 1:]))
    for char in name[:dot]:
        if char not in VALID_NAME_CHARS:
            raise CommandError("invalid character %s in unit name" % go_quote_rune(char))
    if name.startswith("@"):
        raise CommandError('unit name cannot start in "@"')


class Requirements:
    """The [X-Fleet] options of a unit under a name, with %n %N %p %i substituted (job.go)."""

    def __init__(self, name: str, unit_file: UnitFile):
        info = unit_name_info(name)
        self.values: dict[str, list[str]] = {}
        for key, values in unit_file.contents.get("X-Fleet", {}).items():
            self.values[key] = [self._printf(value, info) for value in values] if info else list(values)

    @staticmethod
    def _printf(value: str, info: UnitNameInfo) -> str:
        value = value.replace("%n", info.full_name).replace("%N", info.name)
        return value.replace("%p", info.prefix).replace("%i", info.instance)

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

    def unknown_keys(self) -> list[str]:
        return sorted(key for key in self.values if key not in VALID_REQUIREMENTS)


def validate_options(name: str, unit_file: UnitFile) -> None:
    """api.ValidateOptions: requirement combinations fleet refuses."""
    reqs = Requirements(name, unit_file)
    conflicts, peers = sorted(set(reqs.conflicts())), sorted(set(reqs.peers()))
    for peer in peers:
        for conflict in conflicts:
            if go_path_match(conflict, peer):
                raise CommandError("unresolvable requirements: peer %s matches conflict %s"
                                   % (go_quote(peer), go_quote(conflict)))
    has_target, is_global = reqs.required_target() is not None, reqs.is_global()
    for condition, message in (
            (has_target and bool(peers), "MachineID cannot be used with Peers"),
            (has_target and bool(conflicts), "MachineID cannot be used with Conflicts"),
            (has_target and is_global, "MachineID cannot be used with Global"),
            (is_global and bool(peers), "Global cannot be used with Peers"),
            (is_global and bool(conflicts), "Global cannot be used with Conflicts")):
        if condition:
            raise CommandError(message)


# --------------------------------------------------------------------------------------------------
# Output: Go's text/tabwriter as fleetctl sets it up (minwidth 0, tabwidth 8, padding 1, padchar '\t')
# --------------------------------------------------------------------------------------------------

def tabwrite(lines: list[str], tabwidth: int = 8, padding: int = 1) -> str:
    """Align tab-separated lines the way Go's tabwriter does with padchar '\\t'.

    A cell is text followed by a tab; the text after a line's last tab is no column. A column block
    is a run of lines that have a cell in that column; every cell of a block is padded, with tabs, to
    the block's widest cell plus padding rounded up to a multiple of tabwidth.
    """
    rows = [line.split("\t") for line in lines]
    widths = [[0] * (len(row) - 1) for row in rows]

    def format_block(first: int, last: int, column: int) -> None:
        line = first
        while line < last:
            if column >= len(rows[line]) - 1:
                line += 1
                continue
            end, width = line, 0
            while end < last and column < len(rows[end]) - 1:
                width = max(width, len(rows[end][column]) + padding)
                end += 1
            for row in range(line, end):
                widths[row][column] = width
            format_block(line, end, column + 1)
            line = end

    format_block(0, len(rows), 0)
    out = []
    for row, row_widths in zip(rows, widths):
        for text, width in zip(row[:-1], row_widths):
            cell = -(-width // tabwidth) * tabwidth
            out.append(text + "\t" * -(-(cell - len(text)) // tabwidth))
        out.append(row[-1] + "\n")
    return "".join(out)


def print_table(columns: list[str], rows: list[list[str]], legend: bool) -> None:
    lines = ["\t".join(columns).upper()] if legend else []
    lines += ["\t".join(row) for row in rows]
    sys.stdout.write(tabwrite(lines))
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# etcd v2 keys API client; its errors read like those of the Go client fleet uses
# (github.com/coreos/etcd/client: ClusterError, Error).
# --------------------------------------------------------------------------------------------------

ETCD_KEY_NOT_FOUND, ETCD_TEST_FAILED, ETCD_NODE_EXIST = 100, 101, 105


class EtcdError(CommandError):
    """An error the etcd server answered with."""

    def __init__(self, body: dict):
        self.code = body.get("errorCode", 0)
        super().__init__("%s: %s (%s) [%s]" % (self.code, body.get("message", ""), body.get("cause", ""),
                                               body.get("index", 0)))


class EtcdUnavailable(CommandError):
    """No endpoint answered: 'client: etcd cluster is unavailable or misconfigured; error #0: ...'."""

    def __init__(self, errors: list[str]):
        message = "client: etcd cluster is unavailable or misconfigured"
        for number, error in enumerate(errors):
            message += "; error #%d: %s\n" % (number, error)
        super().__init__(message)


def _dial_error(endpoint: str, exc: BaseException) -> str:
    """Go's dial error text for a failed connection (fleetctl 1.0.0 was built with Go 1.7)."""
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    address = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "dial tcp %s: getsockopt: connection refused" % address
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "dial tcp %s: i/o timeout" % address
    if isinstance(reason, socket.gaierror):
        return "dial tcp: lookup %s: no such host" % host
    if isinstance(reason, OSError) and reason.strerror:
        return "dial tcp %s: %s" % (address, reason.strerror[:1].lower() + reason.strerror[1:])
    return "%s %s: %s" % ("GET", endpoint, reason)


class Etcd:
    """The few v2 keys calls the registry needs, tried on each endpoint in turn."""

    def __init__(self, endpoints: list[str], timeout: float, context: ssl.SSLContext | None, debug: bool):
        self.endpoints = endpoints
        self.timeout = timeout if timeout > 0 else None
        self.context = context
        self.debug = debug
        # Loopback etcd must not go through a proxy from the environment.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def _call(self, method: str, key: str, query: dict | None = None, form: dict | None = None) -> dict | None:
        path = "/v2/keys" + urllib.parse.quote("/" + key.lstrip("/"), safe="/@:=+,;")
        query_text = "?" + urllib.parse.urlencode(query) if query else ""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        errors = []
        for endpoint in self.endpoints:
            url = endpoint.rstrip("/") + path + query_text
            if self.debug:
                stderr("DEBUG fleetctl double: %s %s %s" % (method, url, form or ""))
            request = urllib.request.Request(url, data=data, method=method)
            if data is not None:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    return self._decode(response.read())
            except urllib.error.HTTPError as exc:
                body = self._decode(exc.read())
                if body and "errorCode" in body:
                    if body["errorCode"] == ETCD_KEY_NOT_FOUND and method in ("GET", "DELETE"):
                        return None
                    raise EtcdError(body) from None
                raise CommandError("client: response is invalid json. The endpoint is probably not "
                                   "valid etcd cluster endpoint.") from None
            except (urllib.error.URLError, OSError) as exc:
                errors.append(_dial_error(endpoint, exc))
        raise EtcdUnavailable(errors)

    @staticmethod
    def _decode(raw: bytes) -> dict:
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CommandError("client: response is invalid json. The endpoint is probably not valid etcd "
                               "cluster endpoint.")
        return body

    def get(self, key: str, recursive: bool = False) -> dict | None:
        """The node at key (with children when recursive), or None when the key does not exist."""
        query = {"recursive": "true", "sorted": "true"} if recursive else None
        body = self._call("GET", key, query)
        return body["node"] if body else None

    def set(self, key: str, value: str, prev_exist: bool | None = None, ttl: int = 0) -> None:
        form: dict[str, str] = {"value": value}
        if prev_exist is not None:
            form["prevExist"] = "true" if prev_exist else "false"
        if ttl > 0:
            form["ttl"] = str(ttl)
        self._call("PUT", key, form=form)

    def delete(self, key: str, recursive: bool = False) -> bool:
        """True when something was deleted."""
        query = {"recursive": "true"} if recursive else None
        return self._call("DELETE", key, query) is not None


def walk_leaves(node: dict | None) -> dict[str, str]:
    """key -> value of every leaf under an etcd node."""
    leaves: dict[str, str] = {}
    stack = [node] if node else []
    while stack:
        current = stack.pop()
        if current.get("dir"):
            stack.extend(current.get("nodes", []))
        else:
            leaves[current["key"]] = current.get("value", "")
    return leaves


# --------------------------------------------------------------------------------------------------
# The registry, in fleet's layout (registry/job.go, unit.go, unit_state.go, machine.go)
# --------------------------------------------------------------------------------------------------

@dataclass
class Machine:
    id: str
    public_ip: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def short_id(self) -> str:
        return self.id[:8]

    def match_id(self, wanted: str) -> bool:
        return wanted in (self.id, self.short_id())


@dataclass
class Unit:
    """A unit as fleetctl's schema.Unit sees it, plus the raw registry values behind it."""

    name: str
    unit_file: UnitFile
    hash: str
    desired_state: str
    target: str = ""
    heartbeat: str = ""
    state_machines: dict[str, dict] = field(default_factory=dict)

    @property
    def requirements(self) -> Requirements:
        return Requirements(self.name, self.unit_file)

    @property
    def is_global(self) -> bool:
        return self.requirements.is_global()

    @property
    def current_state(self) -> str:
        """registry/job_state.go determineJobState; '' for global units (they have no schedule)."""
        if self.is_global:
            return ""
        if not self.target or self.target not in self.state_machines:
            return INACTIVE
        if self.heartbeat != self.target:
            return LOADED
        return LAUNCHED

    @property
    def machine_id(self) -> str:
        return "" if self.is_global else self.target


@dataclass
class UnitState:
    name: str
    machine_id: str
    load_state: str
    active_state: str
    sub_state: str
    hash: str


class Registry:
    def __init__(self, etcd: Etcd, prefix: str):
        self.etcd = etcd
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return go_path_join("/", self.prefix, *parts)

    # --- reads ---------------------------------------------------------------------------------------
    def _unit_files(self) -> dict[str, UnitFile]:
        files = {}
        for key, value in walk_leaves(self.etcd.get(self.key("unit"), recursive=True)).items():
            try:
                files[go_path_base(key)] = UnitFile.parse(json.loads(value)["Raw"])
            except (ValueError, KeyError, TypeError, UnitFileError):
                continue
        return files

    def _states(self, name: str | None = None) -> dict[str, dict[str, dict]]:
        """unit name -> machine ID -> state model."""
        node = self.etcd.get(self.key("states", name) if name else self.key("states"), recursive=True)
        states: dict[str, dict[str, dict]] = {}
        for key, value in walk_leaves(node).items():
            unit_name, machine_id = key.split("/")[-2:]
            try:
                states.setdefault(unit_name, {})[machine_id] = json.loads(value)
            except ValueError:
                continue
        return states

    def _unit_from_dir(self, node: dict, files: Callable[[str], UnitFile | None],
                       states: dict[str, dict[str, dict]]) -> Unit | None:
        values = {go_path_base(child["key"]): child.get("value", "")
                  for child in node.get("nodes", []) if not child.get("dir")}
        if "object" not in values:
            return None
        try:
            model = json.loads(values["object"])
            name, unit_hash = model["Name"], model["UnitHash"]
            unit_hash = bytes(unit_hash).hex() if isinstance(unit_hash, list) else base64.b64decode(unit_hash).hex()
        except (ValueError, KeyError, TypeError):
            return None
        unit_file = files(unit_hash)
        if unit_file is None:
            return None
        return Unit(name, unit_file, unit_hash, values.get("target-state", ""), values.get("target", ""),
                    values.get("job-state", ""), states.get(name, {}))

    def units(self) -> list[Unit]:
        """All units, sorted by name (registry.Units and Schedule)."""
        jobs = self.etcd.get(self.key("job"), recursive=True)
        if not jobs:
            return []
        files, states = self._unit_files(), self._states()
        units = [self._unit_from_dir(node, files.get, states) for node in jobs.get("nodes", []) if node.get("dir")]
        return sorted((unit for unit in units if unit is not None), key=lambda unit: unit.name)

    def unit(self, name: str) -> Unit | None:
        node = self.etcd.get(self.key("job", name), recursive=True)
        if not node or not node.get("dir"):
            return None
        states = self._states(name)

        def unit_file(unit_hash: str) -> UnitFile | None:
            raw = self.etcd.get(self.key("unit", unit_hash))
            try:
                return UnitFile.parse(json.loads(raw["value"])["Raw"]) if raw else None
            except (ValueError, KeyError, TypeError, UnitFileError):
                return None

        return self._unit_from_dir(node, unit_file, states)

    def machines(self) -> list[Machine]:
        machines = []
        for key, value in walk_leaves(self.etcd.get(self.key("machines"), recursive=True)).items():
            if go_path_base(key) != "object":
                continue
            try:
                model = json.loads(value)
                machines.append(Machine(model["ID"], model.get("PublicIP") or "", model.get("Metadata") or {}))
            except (ValueError, KeyError, TypeError):
                continue
        return sorted(machines, key=lambda machine: machine.id)

    def unit_states(self) -> list[UnitState]:
        states = []
        for name, per_machine in self._states().items():
            for machine_id, model in per_machine.items():
                states.append(UnitState(name, machine_id, model.get("loadState", ""), model.get("activeState", ""),
                                        model.get("subState", ""), model.get("unitHash", "")))
        return sorted(states, key=lambda state: (state.name, state.machine_id))

    # --- writes --------------------------------------------------------------------------------------
    def create_unit(self, name: str, unit_file: UnitFile, replace: bool) -> None:
        """registry.CreateUnit: store the unit file under its hash, then the job object, with the
        desired state 'inactive' (fleetctl sends no desired state when it creates a unit).

        A replaced unit keeps its name and gets the new hash; its desired state goes back to
        'inactive' too, which is the state fleetctl then waits for before it loads or starts it."""
        unit_hash = unit_file.hash()
        try:
            self.etcd.set(self.key("unit", unit_hash), json.dumps({"Raw": unit_file.serialize()}), prev_exist=False)
        except EtcdError as exc:
            if exc.code != ETCD_NODE_EXIST:
                raise
        model = json.dumps({"Name": name, "UnitHash": list(bytes.fromhex(unit_hash))}, separators=(",", ":"))
        try:
            self.etcd.set(self.key("job", name, "object"), model, prev_exist=False)
        except EtcdError as exc:
            if exc.code != ETCD_NODE_EXIST:
                raise
            if not replace:
                raise CommandError("job already exists") from None
            self.etcd.set(self.key("job", name, "object"), model, prev_exist=True)
        self.set_target_state(name, INACTIVE)

    def set_target_state(self, name: str, state: str) -> None:
        self.etcd.set(self.key("job", name, "target-state"), state)

    def destroy_unit(self, name: str, drop_states: bool = True) -> None:
        """registry.DestroyUnit; with drop_states also what the agents would do next (unload it, withdraw
        its states). unit/<hash> stays, as in fleet."""
        if not self.etcd.delete(self.key("job", name), recursive=True):
            raise CommandError("job does not exist")
        if drop_states:
            self.etcd.delete(self.key("states", name), recursive=True)

    def set_machine(self, machine: Machine, ttl: int) -> None:
        model = {"ID": machine.id, "PublicIP": machine.public_ip, "Metadata": machine.metadata, "Version": VERSION}
        self.etcd.set(self.key("machines", machine.id, "object"), json.dumps(model), ttl=ttl)

    def remove_machine(self, machine_id: str) -> None:
        self.etcd.delete(self.key("machines", machine_id), recursive=True)

    def fleetd_present(self) -> bool:
        """True when fleetd's engines run this registry: one holds lease/engine-leader (pkg/lease, with a
        TTL), or one has written the cluster's engine/version, which engines do before they take the
        lease (engine/engine.go ensureEngineVersionMatch) and which stays."""
        return (self.etcd.get(self.key("lease", "engine-leader")) is not None
                or self.etcd.get(self.key("engine", "version")) is not None)


# --------------------------------------------------------------------------------------------------
# Engine and agents at once: schedule, unschedule, and publish the states agents would report.
# --------------------------------------------------------------------------------------------------

SYSTEMD_STATES = {LOADED: ("loaded", "inactive", "dead"), LAUNCHED: ("loaded", "active", "running")}


def _metadata_ok(unit: Unit, machine: Machine) -> bool:
    return all(machine.metadata.get(key) in values for key, values in unit.requirements.required_metadata().items())


def _able_to_run(unit: Unit, machine: Machine, placed: dict[str, list[Unit]]) -> bool:
    """The scheduler's checks (agent state AbleToRun): MachineID, metadata, MachineOf, Conflicts."""
    reqs = unit.requirements
    target = reqs.required_target()
    if target is not None and not machine.match_id(target):
        return False
    if not _metadata_ok(unit, machine):
        return False
    here = placed.get(machine.id, [])
    names = {other.name for other in here}
    if any(peer not in names for peer in reqs.peers()):
        return False
    for other in here:
        if any(go_path_match(pattern, other.name) for pattern in reqs.conflicts()):
            return False
        if any(go_path_match(pattern, unit.name) for pattern in other.requirements.conflicts()):
            return False
    return True


def _state_model(unit: Unit, machine: Machine, state: str) -> dict:
    load, active, sub = SYSTEMD_STATES[state]
    return {"loadState": load, "activeState": active, "subState": sub,
            "machineState": {"ID": machine.id, "PublicIP": machine.public_ip, "Metadata": machine.metadata,
                             "Version": VERSION},
            "unitHash": unit.hash}


def _publish_states(registry: Registry, unit: Unit, wanted: dict[str, dict]) -> None:
    """Make states/<unit>/* hold exactly the wanted models (write only what differs)."""
    for machine_id, model in wanted.items():
        if unit.state_machines.get(machine_id) != model:
            registry.etcd.set(registry.key("states", unit.name, machine_id), json.dumps(model))
    for machine_id in unit.state_machines:
        if machine_id not in wanted:
            registry.etcd.delete(registry.key("states", unit.name, machine_id))


def reconcile(registry: Registry) -> None:
    """One tick of the engine plus every agent, so current state follows desired state at once."""
    machines = {machine.id: machine for machine in registry.machines()}
    units = registry.units()
    placed: dict[str, list[Unit]] = {machine_id: [] for machine_id in machines}
    pending = []
    for unit in units:
        if unit.is_global:
            wanted = {}
            if unit.desired_state in (LOADED, LAUNCHED):
                wanted = {mid: _state_model(unit, m, unit.desired_state)
                          for mid, m in machines.items() if _metadata_ok(unit, m)}
            _publish_states(registry, unit, wanted)
            continue
        if unit.desired_state not in (LOADED, LAUNCHED):
            # The engine unschedules units whose desired state is inactive; the agent unloads them.
            if unit.target:
                registry.etcd.delete(registry.key("job", unit.name, "target"))
            if unit.heartbeat:
                registry.etcd.delete(registry.key("job", unit.name, "job-state"))
            _publish_states(registry, unit, {})
            continue
        if unit.target and unit.target not in machines:
            registry.etcd.delete(registry.key("job", unit.name, "target"))
            unit.target = ""
        if unit.target:
            placed[unit.target].append(unit)
        pending.append(unit)

    # Units waiting for a machine; repeat while progress is made, for MachineOf chains.
    unscheduled = [unit for unit in pending if not unit.target]
    progress = True
    while unscheduled and progress:
        progress = False
        for unit in list(unscheduled):
            candidates = [mid for mid in sorted(machines) if _able_to_run(unit, machines[mid], placed)]
            if not candidates:
                continue
            choice = min(candidates, key=lambda mid: (len(placed[mid]), mid))
            try:
                registry.etcd.set(registry.key("job", unit.name, "target"), choice, prev_exist=False)
            except EtcdError as exc:
                if exc.code != ETCD_NODE_EXIST:
                    raise
                current = registry.etcd.get(registry.key("job", unit.name, "target"))
                choice = current["value"] if current else ""
                if choice not in machines:
                    continue
            unit.target = choice
            placed[choice].append(unit)
            unscheduled.remove(unit)
            progress = True

    for unit in pending:
        heartbeat_key = registry.key("job", unit.name, "job-state")
        if not unit.target:
            _publish_states(registry, unit, {})
            if unit.heartbeat:
                registry.etcd.delete(heartbeat_key)
            continue
        _publish_states(registry, unit, {unit.target: _state_model(unit, machines[unit.target], unit.desired_state)})
        if unit.desired_state == LAUNCHED and unit.heartbeat != unit.target:
            registry.etcd.set(heartbeat_key, unit.target)
        elif unit.desired_state != LAUNCHED and unit.heartbeat:
            registry.etcd.delete(heartbeat_key)


# --------------------------------------------------------------------------------------------------
# Command line: global (persistent) flags, per-command flags, pflag-like parsing
# --------------------------------------------------------------------------------------------------

@dataclass
class Flag:
    name: str
    kind: type
    default: object
    help: str = ""
    short: str = ""


GLOBAL_FLAGS = [
    Flag("help", bool, False, "Print usage information and exit"),
    Flag("h", bool, False, "Print usage information and exit"),
    Flag("debug", bool, False, "Print out more debug information to stderr"),
    Flag("version", bool, False, "Print the version and exit"),
    Flag("driver", str, "API", 'Adapter used to execute fleetctl commands. Options include "API" and "etcd".'),
    Flag("endpoint", str, DEFAULT_ENDPOINT, "Location of the fleet API if --driver=API. Alternatively, if "
         "--driver=etcd, location of the etcd API. (double: an http(s):// endpoint is used as etcd's URL)"),
    Flag("etcd-key-prefix", str, DEFAULT_KEY_PREFIX, "Keyspace for fleet data in etcd (development use only!)"),
    Flag("key-file", str, "", "Location of TLS key file used to secure communication with the fleet API or etcd"),
    Flag("cert-file", str, "", "Location of TLS cert file used to secure communication with the fleet API or etcd"),
    Flag("ca-file", str, "", "Location of TLS CA file used to secure communication with the fleet API or etcd"),
    Flag("known-hosts-file", str, "~/.fleetctl/known_hosts", "File used to store remote machine fingerprints. "
         "Ignored if strict host key checking is disabled."),
    Flag("strict-host-key-checking", bool, True, "Verify host keys presented by remote machines before "
         "initiating SSH connections."),
    Flag("ssh-timeout", float, 10.0, "Amount of time in seconds to allow for SSH connection initialization "
         "before failing."),
    Flag("tunnel", str, "", "Establish an SSH tunnel through the provided address for communication with "
         "fleet and etcd. (double: ignored)"),
    Flag("request-timeout", float, 3.0, "Amount of time in seconds to allow a single request before "
         "considering it failed."),
    Flag("ssh-username", str, "core", "Username to use when connecting to CoreOS instance."),
    Flag("experimental-api", bool, True, "DEPRECATED: do not use this flag."),
    Flag("etcd-keyfile", str, "", "DEPRECATED: do not use this flag."),
    Flag("etcd-certfile", str, "", "DEPRECATED: do not use this flag."),
    Flag("etcd-cafile", str, "", "DEPRECATED: do not use this flag."),
]
# The deprecated TLS flags write the same variables as their successors (fleetctl.go).
FLAG_ALIASES = {"h": "help", "etcd-keyfile": "key-file", "etcd-certfile": "cert-file", "etcd-cafile": "ca-file"}

SIGN = Flag("sign", bool, False, "DEPRECATED - this option cannot be used")
REPLACE = Flag("replace", bool, False, "Replace the old units in the cluster with new versions.")
NO_BLOCK = Flag("no-block", bool, False, "Do not wait until the units reached the state before exiting.")
BLOCK_ATTEMPTS = Flag("block-attempts", int, 0, "Wait until the units reached the state, performing up to N "
                      "attempts before giving up. A value of 0 indicates no limit.")
FULL = Flag("full", bool, False, "Do not ellipsize fields on output", short="l")
NO_LEGEND = Flag("no-legend", bool, False, "Do not print a legend (column headers)")
MAX_PRINT = Flag("max-print-units", int, 0, "Set maximum number of units to be printed")
SSH_PORT = Flag("ssh-port", int, 22, "Connect to remote hosts over SSH using this TCP port.")


@dataclass
class Options:
    values: dict[str, object]
    given: set[str]

    def __getitem__(self, name: str):
        return self.values[FLAG_ALIASES.get(name, name)]


def _convert(flag: Flag, raw: str) -> object:
    try:
        if flag.kind is bool:
            return go_parse_bool(raw)
        if flag.kind is int:
            if not re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", raw):
                raise ValueError('strconv.ParseInt: parsing %s: invalid syntax' % go_quote(raw))
            return int(raw, 0)
        if flag.kind is float:
            return float(raw)
    except ValueError as exc:
        detail = exc.args[0] if exc.args and str(exc.args[0]).startswith("strconv") else \
            'strconv.ParseFloat: parsing %s: invalid syntax' % go_quote(raw)
        raise UsageError('invalid argument %s for "--%s" flag: %s' % (go_quote(raw), flag.name, detail)) from None
    return raw


def parse_args(argv: list[str], flags: list[Flag], values: dict[str, object], given: set[str],
               stop_at_positional: bool) -> tuple[list[str], list[str]]:
    """pflag-style parsing: --name=value, --name value, bare --name for booleans, -x shorthands,
    '--' ends flags. Returns (positional args, the rest when stopping at the first positional)."""
    by_name = {flag.name: flag for flag in flags}
    by_short = {flag.short: flag for flag in flags if flag.short}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, has_value, raw = arg[2:].partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise UsageError("unknown flag: --%s" % name)
            if not has_value:
                if flag.kind is bool:
                    raw = "true"
                elif i < len(argv):
                    raw = argv[i]
                    i += 1
                else:
                    raise UsageError("flag needs an argument: --%s" % name)
        elif arg.startswith("-") and len(arg) > 1:
            flag = by_short.get(arg[1])
            if flag is None:
                raise UsageError("unknown shorthand flag: %s in %s" % (go_quote_rune(arg[1]), arg))
            raw = arg[3:] if arg[2:3] == "=" else "true" if flag.kind is bool else arg[2:]
            if not raw:
                if i >= len(argv):
                    raise UsageError("flag needs an argument: %s in %s" % (go_quote_rune(arg[1]), arg))
                raw = argv[i]
                i += 1
        else:
            positional.append(arg)
            if stop_at_positional:
                return positional, argv[i:]
            continue
        target = FLAG_ALIASES.get(flag.name, flag.name)
        values[target] = _convert(flag, raw)
        given.add(target)
    return positional, []


def flags_from_env(values: dict[str, object], given: set[str]) -> None:
    """fleetctl's getFlagsFromEnv: FLEETCTL_<FLAG> for each global flag not set on the command line;
    a value that does not parse is ignored, as fleetctl ignores fs.Set's error."""
    for flag in GLOBAL_FLAGS:
        target = FLAG_ALIASES.get(flag.name, flag.name)
        if target in given:
            continue
        raw = os.environ.get("FLEETCTL_" + flag.name.upper().replace("-", "_"), "")
        if raw:
            try:
                values[target] = _convert(flag, raw)
            except UsageError:
                pass


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------

class Context:
    """What a command needs: its flags and, created on first use, the registry client."""

    def __init__(self, options: Options, command: str):
        self.options = options
        self.command = command
        self._registry: Registry | None = None
        self._machine_cache: dict[str, Machine] | None = None
        self._fleetd = False

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(make_etcd(self.options), str(self.options["etcd-key-prefix"]))
        return self._registry

    def flag(self, name: str):
        return self.options[name]

    def fleetd_runs(self) -> bool:
        """Whether a fleetd's engine and agents run the registry; once seen, for the rest of the command
        (engine/version stays)."""
        if not self._fleetd:
            self._fleetd = self.registry.fleetd_present()
        return self._fleetd

    def play_engine_and_agents(self) -> None:
        """Without a fleetd, do at once what its engine and agents would do; with one, nothing: they do it."""
        if not self.fleetd_runs():
            reconcile(self.registry)

    def cached_machine(self, machine_id: str) -> Machine | None:
        """fleetctl's cachedMachineState: best effort, errors ignored."""
        if self._machine_cache is None:
            try:
                self._machine_cache = {machine.id: machine for machine in self.registry.machines()}
            except CommandError:
                return None
        return self._machine_cache.get(machine_id)

    def machine_legend(self, machine_id: str, full: bool) -> str:
        """machineFullLegend: 'abcdef12.../10.0.0.1', the full ID with --full, no IP if unknown."""
        machine = self.cached_machine(machine_id) or Machine(machine_id)
        legend = machine.id if full else machine.short_id() + "..."
        return "%s/%s" % (legend, machine.public_ip) if machine.public_ip else legend

    def block_attempts(self) -> int:
        """getBlockAttempts: -1 with --no-block, 0 (forever) or N."""
        if self.flag("no-block"):
            return -1
        attempts = int(self.flag("block-attempts"))
        return attempts if attempts > 0 else 0


def client_error(options: Options) -> str | None:
    """getClient's checks of --driver and --endpoint, before any request ('Unable to initialize client')."""
    driver = str(options["driver"])
    if options["experimental-api"] and driver not in ("API", "etcd"):
        return "unrecognized driver %s" % go_quote(driver)
    if options["experimental-api"] and driver == "API":
        endpoint = str(options["endpoint"]).split(",", maxsplit=1)[0]
        url = urllib.parse.urlsplit(endpoint)
        if not url.scheme:
            if ":" in endpoint.split("/")[0]:
                return "parse %s: first path segment in URL cannot contain colon" % endpoint
            return "URL scheme undefined"
        if url.scheme in ("unix", "file") and url.netloc:
            return "unable to connect to host %s with scheme %s" % (go_quote(url.netloc), go_quote(url.scheme))
    return None


def etcd_endpoints(options: Options) -> list[str]:
    endpoints = [part.strip() for part in str(options["endpoint"]).split(",") if part.strip()]
    if endpoints and endpoints[0].startswith(("http://", "https://")):
        return [part for part in endpoints if part.startswith(("http://", "https://"))]
    configured = os.environ.get("FLEETCTL_DOUBLE_ETCD", "") or DEFAULT_DOUBLE_ETCD
    return [part.strip() for part in configured.split(",") if part.strip()]


def make_etcd(options: Options) -> Etcd:
    endpoints = etcd_endpoints(options)
    context = None
    if any(endpoint.startswith("https://") for endpoint in endpoints):
        context = ssl.create_default_context(cafile=str(options["ca-file"]) or None)
        if options["cert-file"]:
            context.load_cert_chain(str(options["cert-file"]), str(options["key-file"]) or None)
    if options["tunnel"] and options["debug"]:
        stderr("DEBUG fleetctl double: --tunnel %s ignored, connecting to etcd directly" % options["tunnel"])
    return Etcd(endpoints, float(options["request-timeout"]), context, bool(options["debug"]))


# --- waiting (fleetctl.go tryWaitForUnitStates / checkUnitState / assertUnitState) --------------------

def wait_for_states(ctx: Context, names: list[str], label: str, state: str, attempts: int) -> int:
    """0 when every unit reached the state; prints 'Unit x state on m' as each one does."""
    if attempts <= -1:
        for name in names:
            stdout("Triggered unit %s %s" % (name, label))
        return 0
    return 0 if _poll_units(ctx, names, state, attempts) else 1


def _poll_units(ctx: Context, names: list[str], state: str, attempts: int) -> bool:
    waiting = list(names)
    attempt = 0
    while waiting:
        try:
            ctx.play_engine_and_agents()
        except CommandError:
            pass
        for name in list(waiting):
            try:
                unit = ctx.registry.unit(name)
            except CommandError:
                continue
            if unit is None:
                continue
            current = unit.desired_state if unit.is_global else unit.current_state
            if current != state:
                continue
            waiting.remove(name)
            message = "Unit %s %s" % (name, unit.current_state)
            if unit.machine_id and ctx.cached_machine(unit.machine_id):
                message += " on " + ctx.machine_legend(unit.machine_id, False)
            sys.stdout.write(message + "\n")
            sys.stdout.flush()
        attempt += 1
        if not waiting or (attempts > 0 and attempt >= attempts):
            break
        time.sleep(SLEEP_BETWEEN_ATTEMPTS)
    for name in waiting:
        stderr("Error waiting for units: timed out waiting for unit %s to report state %s" % (name, state))
    return not waiting


# --- creating units (fleetctl.go lazyCreateUnits and helpers) ----------------------------------------

def _stat(path: str) -> OSError | None:
    try:
        os.stat(path)
        return None
    except OSError as exc:
        return exc


def _match_local_file(path: str, unit: Unit) -> tuple[bool, str | None]:
    """matchLocalFileAndUnit: (same content, stat error text)."""
    error = _stat(path)
    if error is not None:
        return False, go_os_error("stat", path, error)
    try:
        return read_unit_file(path).hash() == unit.hash, None
    except (OSError, UnitFileError):
        return False, None


def _is_local_unit_different(ctx: Context, path: str, unit: Unit) -> tuple[bool, str | None]:
    """isLocalUnitDifferent (not fatal): warns unless --replace; falls back to the template file."""
    replace = bool(ctx.flag("replace"))
    same, error = _match_local_file(path, unit)
    if error is None:
        if not same and not replace:
            stderr("WARNING: Unit %s in registry differs from local unit file %s. Add --replace to override."
                   % (unit.name, path))
        return not same, None
    info = unit_name_info(go_path_base(path))
    if info is None:
        return False, "error extracting information from unit name %s" % path
    if not info.is_instance:
        return False, "error Unit %s does not seem to be a template unit" % path
    same, error = _match_local_file(go_path_join(go_path_dir(path), info.template), unit)
    if error is None:
        if not same and not replace:
            stderr("WARNING: Unit %s in registry differs from local template unit file %s. Add --replace to "
                   "override." % (unit.name, path))
        return not same, None
    return False, error


# checkReplaceUnitState: the desired states in which each command may replace a unit.
ALLOWED_REPLACE = {"submit": (INACTIVE,), "load": (INACTIVE, LOADED), "start": (INACTIVE, LOADED, LAUNCHED)}


def _registry_unit(ctx: Context, name: str, error: str) -> Unit | None:
    """The unit from the registry; a registry error is raised again as `error` % (name, error), worded as
    the fleetctl function that meets it words it."""
    try:
        return ctx.registry.unit(name)
    except CommandError as exc:
        raise CommandError(error % (name, exc)) from None


def _check_unit_creation(ctx: Context, arg: str) -> tuple[bool, bool]:
    """checkUnitCreation: (create it now, it exists and is being replaced)."""
    name = unit_name_mangle(arg)
    unit = _registry_unit(ctx, name, "error retrieving Unit(%s) from Registry: %s")
    if unit is None:
        return True, False
    different, error = _is_local_unit_different(ctx, arg, unit)
    if ctx.flag("replace"):
        if error is not None:
            raise CommandError(error)
        if different:
            if unit.desired_state in ALLOWED_REPLACE[ctx.command]:
                return True, True
            stderr("Warning: can not replace Unit(%s) in state '%s', use the appropriate command"
                   % (unit.name, unit.desired_state))
        else:
            stdout("Found same Unit(%s) in Registry, nothing to do" % unit.name)
    return False, False


def _unit_file_for(ctx: Context, arg: str) -> UnitFile:
    """getUnitFile: a file on disk, else an instance of a template in the registry or on disk."""
    name = unit_name_mangle(arg)
    error = _stat(arg)
    if error is None or error.errno != errno.ENOENT:
        try:
            return read_unit_file(arg)
        except OSError as exc:
            raise CommandError("failed getting Unit(%s) from file: %s" % (arg, read_error(arg, exc))) from None
        except UnitFileError as exc:
            raise CommandError("failed getting Unit(%s) from file: %s" % (arg, exc)) from None
    info = unit_name_info(name)
    if info is None:
        raise CommandError("error extracting information from unit name %s" % name)
    if not info.is_instance:
        raise CommandError("unable to find Unit(%s) in Registry or on filesystem" % name)
    try:
        return _template_unit_file(ctx, info, arg)
    except CommandError as exc:
        raise CommandError("failed getting Unit(%s) from template: %s" % (arg, exc)) from None


def _template_unit_file(ctx: Context, info: UnitNameInfo, arg: str) -> UnitFile:
    """getUnitFileFromTemplate: the template from the registry first, else from beside the file."""
    try:
        template = ctx.registry.unit(info.template)
    except CommandError as exc:
        raise CommandError("error retrieving template Unit(%s) from Registry: %s" % (info.template, exc)) from None
    if template is not None:
        _is_local_unit_different(ctx, arg, template)
        return template.unit_file
    path = go_path_join(go_path_dir(arg), info.template)
    if _stat(path) is not None:
        raise CommandError("unable to find template Unit(%s) in Registry or on filesystem" % info.template)
    try:
        return read_unit_file(path)
    except OSError as exc:
        raise CommandError("unable to load template Unit(%s) from file: %s"
                           % (info.template, read_error(path, exc))) from None
    except UnitFileError as exc:
        raise CommandError("unable to load template Unit(%s) from file: %s" % (info.template, exc)) from None


def _create_unit(ctx: Context, name: str, unit_file: UnitFile, replace: bool) -> None:
    """createUnit: the checks fleetctl makes before it asks fleet to store the unit."""
    validate_name(name)
    validate_options(name, unit_file)
    unknown = Requirements(name, unit_file).unknown_keys()
    if unknown:
        stderr("WARNING: Unit %s: unrecognized requirement in [X-Fleet] section: %s" % (name, go_quote(unknown[0])))
    try:
        ctx.registry.create_unit(name, unit_file, replace)
    except CommandError as exc:
        raise CommandError("failed creating unit %s: %s" % (name, exc)) from None


def lazy_create_units(ctx: Context, args: list[str]) -> None:
    created = []
    for arg in args:
        arg = maybe_append_default_unit_type(arg)
        name = unit_name_mangle(arg)
        create, replacing = _check_unit_creation(ctx, arg)
        if not create:
            continue
        _create_unit(ctx, name, _unit_file_for(ctx, arg), replacing)
        created.append(name)
    if not created:
        return
    ctx.play_engine_and_agents()
    # fleetctl waits for each new unit to be inactive, with --block-attempts (0: forever).
    attempts = int(ctx.options.values.get("block-attempts", 0) or 0)
    if not _poll_units(ctx, created, INACTIVE, attempts if attempts > 0 else 0):
        raise CommandError("One or more errors creating units")


def set_target_states(ctx: Context, args: list[str], state: str) -> list[Unit]:
    """setTargetStateOfUnits: the units whose desired state this call changed."""
    triggered = []
    for arg in args:
        name = unit_name_mangle(arg)
        unit = _registry_unit(ctx, name, "error retrieving unit %s from registry: %s")
        if unit is None:
            raise CommandError("unable to find unit %s" % name)
        if unit.desired_state == state:
            continue
        info = unit_name_info(name)
        if info is not None and info.is_template and state != INACTIVE:
            # fleet's API refuses it (api/units.go); fleetctl shows the HTTP client's error.
            raise CommandError("googleapi: Error 400: cannot activate template %s" % go_quote(name))
        ctx.registry.set_target_state(name, state)
        triggered.append(unit)
    ctx.play_engine_and_agents()
    return triggered


def find_units(ctx: Context, args: list[str]) -> list[Unit]:
    """findUnits: the named units that exist, in argument order; others are skipped silently."""
    units = {unit.name: unit for unit in ctx.registry.units()}
    return [units[name] for name in (unit_name_mangle(arg) for arg in args) if name in units]


def _submit(ctx: Context, args: list[str]) -> int | None:
    """submit, and the first step of load and start: the exit code when the command ends here, else None."""
    if not args:
        stderr("No units given")
        return 0
    try:
        lazy_create_units(ctx, args)
    except CommandError as exc:
        stderr("Error creating units: %s" % exc)
        return 1
    return None


def run_submit(ctx: Context, args: list[str]) -> int:
    exit_code = _submit(ctx, args)
    return 0 if exit_code is None else exit_code


def _run_schedule(ctx: Context, args: list[str], state: str, label: str, error_word: str) -> int:
    """load and start: create what is missing, set the desired state, wait unless --no-block."""
    exit_code = _submit(ctx, args)
    if exit_code is not None:
        return exit_code
    try:
        triggered = set_target_states(ctx, args, state)
    except CommandError as exc:
        stderr("Error %s units: %s" % (error_word, exc))
        return 1
    waiting: list[str] = []
    for unit in triggered:
        _note_triggered(unit, label, waiting)
    exit_code = wait_for_states(ctx, waiting, label, state, ctx.block_attempts())
    if exit_code != 0:
        stderr("Error waiting for unit states, exit status: %d" % exit_code)
        return 1
    return 0


def run_load(ctx: Context, args: list[str]) -> int:
    return _run_schedule(ctx, args, LOADED, "load", "loading")


def run_start(ctx: Context, args: list[str]) -> int:
    return _run_schedule(ctx, args, LAUNCHED, "start", "starting")


def _note_triggered(unit: Unit, label: str, waiting: list[str]) -> None:
    """After setting a unit's desired state: a global unit is only reported as triggered, the others are waited for."""
    if unit.is_global:
        stdout("Triggered global unit %s %s" % (unit.name, label))
    else:
        waiting.append(unit.name)


def _found_units(ctx: Context, args: list[str]) -> list[Unit] | None:
    """find_units, with its error printed; None after an error (the command then exits 1)."""
    try:
        return find_units(ctx, args)
    except CommandError as exc:
        stderr(str(exc))
        return None


def _set_desired_states(ctx: Context, units: Iterable[Unit], state: str, label: str) -> int:
    """stop and unload: set the desired state of each unit as `units` yields it, then wait for the non-global
    ones. A CommandError raised while yielding ends the command there (main prints it, exit 1) with the
    states already set kept, as fleetctl's stop.go returns in the middle of its loop."""
    waiting: list[str] = []
    for unit in units:
        ctx.registry.set_target_state(unit.name, state)
        _note_triggered(unit, label, waiting)
    ctx.play_engine_and_agents()
    return wait_for_states(ctx, waiting, label, state, ctx.block_attempts())


def _units_to_stop(units: list[Unit]) -> Iterator[Unit]:
    """stop.go: a loaded unit is skipped, an inactive one refused; global units are always triggered."""
    for unit in units:
        if not unit.is_global:
            if unit.current_state == INACTIVE:
                raise CommandError("Unable to stop unit %s in state %s" % (unit.name, INACTIVE))
            if unit.current_state == LOADED:
                continue
        yield unit


def run_stop(ctx: Context, args: list[str]) -> int:
    units = _found_units(ctx, args)
    if units is None:
        return 1
    return _set_desired_states(ctx, _units_to_stop(units), LOADED, "stop")


def run_unload(ctx: Context, args: list[str]) -> int:
    units = _found_units(ctx, args)
    if units is None:
        return 1
    # unload.go skips units that are already inactive, global ones excepted.
    to_unload = (unit for unit in units if unit.is_global or unit.current_state != INACTIVE)
    return _set_desired_states(ctx, to_unload, INACTIVE, "unload")


def run_destroy(ctx: Context, args: list[str]) -> int:
    if not args:
        stderr("No units given")
        return 0
    units = _found_units(ctx, args)
    if units is None:
        return 1
    if not units:
        stderr("Units not found in registry")
        return 0
    exit_code = 0
    for unit in units:
        try:
            ctx.registry.destroy_unit(unit.name, drop_states=not ctx.fleetd_runs())
        except CommandError as exc:
            if str(exc) == "job does not exist":
                continue
            stderr("Error destroying units: %s" % exc)
            exit_code = 1
            continue
        stdout("Destroyed %s" % unit.name)
    try:
        ctx.play_engine_and_agents()
    except CommandError:
        pass
    return exit_code


def _one_unit_name(args: list[str], message: str) -> str | None:
    """The mangled name of the one unit cat and journal take; None after `message` (their wordings differ by a period)."""
    if len(args) != 1:
        stderr(message)
        return None
    return unit_name_mangle(args[0])


def run_cat(ctx: Context, args: list[str]) -> int:
    name = _one_unit_name(args, "One unit file must be provided")
    if name is None:
        return 1
    try:
        unit = ctx.registry.unit(name)
    except CommandError as exc:
        stderr("Error retrieving Unit %s: %s" % (name, exc))
        return 1
    if unit is None:
        stderr("Unit %s not found" % name)
        return 1
    # Must not add a newline: the contents are printed as fleet holds them.
    sys.stdout.write(unit.unit_file.serialize())
    sys.stdout.flush()
    return 0


def _running_unit(ctx: Context, name: str) -> tuple[Unit | None, int]:
    """The unit for status and journal, or an exit code after fleetctl's message."""
    try:
        unit = ctx.registry.unit(name)
    except CommandError as exc:
        stderr("Error retrieving Unit %s: %s" % (name, exc))
        return None, 1
    if unit is None:
        stderr("Unit %s does not exist." % name)
        return None, 1
    if unit.is_global:
        stderr("Unable to get status for global unit %s. Check the status on the host using systemctl." % name)
        return None, 1
    if not unit.target or unit.current_state == INACTIVE:
        stderr("Unit %s does not appear to be running." % name)
        return None, 1
    return unit, 0


def run_status(ctx: Context, args: list[str]) -> int:
    if not args:
        stderr("No units given")
        return 0
    exit_code = 0
    for index, arg in enumerate(args):
        if index:
            sys.stdout.write("\n")
        name = unit_name_mangle(arg)
        unit, code = _running_unit(ctx, name)
        if unit is None:
            exit_code = code
            continue
        # What the unit's agent reported (states/<unit>/<target>), which is systemd's view of it.
        reported = unit.state_machines.get(unit.target) or {}
        load, active, sub = (reported.get(key) or "-" for key in ("loadState", "activeState", "subState"))
        description = unit.unit_file.description()
        sys.stdout.write("\u25cf %s%s\n" % (name, " - " + description if description else ""))
        sys.stdout.write("   Loaded: %s (/run/fleet/units/%s; linked-runtime; vendor preset: disabled)\n" % (load, name))
        sys.stdout.write("   Active: %s (%s)\n" % (active, sub))
        sys.stdout.write("   (fleetctl test double: the state %s reported in the registry)\n"
                         % ctx.machine_legend(unit.target, False))
        sys.stdout.flush()
        if active != "active":
            exit_code = 3  # systemctl status exits 3 for an inactive unit; fleetctl passes it on
    return exit_code


def run_journal(ctx: Context, args: list[str]) -> int:
    name = _one_unit_name(args, "One unit file must be provided.")
    if name is None:
        return 1
    unit, code = _running_unit(ctx, name)
    if unit is None:
        return code
    stderr("fleetctl test double: no journal is kept; %s runs (on paper) on %s"
           % (name, ctx.machine_legend(unit.target, True)))
    return 0


def _columns(fields: str, known: dict, stderr_note: Callable[[str], None] | None = None) -> list[str] | None:
    """The --fields columns, or None after fleetctl's message for an empty or unknown field."""
    if fields == "":
        stderr("Must define output format")
        return None
    columns = fields.split(",")
    for column in columns:
        if column not in known:
            stderr("Invalid key in output format: %s" % go_quote(column))
            return None
        if stderr_note:
            stderr_note(column)
    return columns


def _hash_field(unit_hash: str, full: bool) -> str:
    return unit_hash if full else unit_hash[:7]


def run_list_unit_files(ctx: Context, _args: list[str]) -> int:
    full = bool(ctx.flag("full"))

    def target(unit: Unit) -> str:
        if unit.is_global:
            return "global"
        return ctx.machine_legend(unit.target, full) if unit.target else "-"

    fields: dict[str, Callable[[Unit], str]] = {
        "unit": lambda unit: unit.name,
        "global": lambda unit: "true" if unit.is_global else "false",
        "dstate": lambda unit: unit.desired_state or "-",
        "target": target,
        "tmachine": target,
        "state": lambda unit: "-" if unit.is_global or not unit.current_state else unit.current_state,
        "hash": lambda unit: _hash_field(unit.hash, full),
        "desc": lambda unit: unit.unit_file.description() or "-",
    }

    def deprecated(column: str) -> None:
        if column == "tmachine":
            stderr('WARNING: The "tmachine" field is deprecated. Use "target" instead')

    columns = _columns(str(ctx.flag("fields")), fields, deprecated)
    if columns is None:
        return 1
    try:
        units = ctx.registry.units()
    except CommandError as exc:
        stderr("Error retrieving list of units from repository: %s" % exc)
        return 1
    rows = []
    max_units = int(ctx.flag("max-print-units"))
    for index, unit in enumerate(units):
        if max_units > 0 and index >= max_units:
            print_table(columns, rows, not ctx.flag("no-legend"))
            stderr("Further units after %d-th are omitted" % max_units)
            return 0
        rows.append([fields[column](unit) for column in columns])
    print_table(columns, rows, not ctx.flag("no-legend"))
    return 0


def _print_listing(ctx: Context, fields: dict, fetch: Callable[[], list], error: str) -> int:
    """The --fields columns of every row `fetch` returns, as fleetctl's list commands print them."""
    columns = _columns(str(ctx.flag("fields")), fields)
    if columns is None:
        return 1
    try:
        rows = fetch()
    except CommandError as exc:
        stderr("%s: %s" % (error, exc))
        return 1
    print_table(columns, [[fields[column](row) for column in columns] for row in rows], not ctx.flag("no-legend"))
    return 0


def run_list_units(ctx: Context, _args: list[str]) -> int:
    full = bool(ctx.flag("full"))
    fields: dict[str, Callable[[UnitState], str]] = {
        "unit": lambda state: state.name or "-",
        "load": lambda state: state.load_state or "-",
        "active": lambda state: state.active_state or "-",
        "sub": lambda state: state.sub_state or "-",
        "machine": lambda state: ctx.machine_legend(state.machine_id, full) if state.machine_id else "-",
        "hash": lambda state: _hash_field(state.hash, full) if state.hash else "-",
    }
    return _print_listing(ctx, fields, ctx.registry.unit_states, "Error retrieving list of units from repository")


def run_list_machines(ctx: Context, _args: list[str]) -> int:
    full = bool(ctx.flag("full"))
    fields: dict[str, Callable[[Machine], str]] = {
        "machine": lambda machine: machine.id if full else machine.short_id() + "...",
        "ip": lambda machine: machine.public_ip or "-",
        "metadata": lambda machine: ",".join("%s=%s" % item for item in sorted(machine.metadata.items())) or "-",
    }
    return _print_listing(ctx, fields, ctx.registry.machines, "Error retrieving list of active machines")


def run_version(ctx: Context, _args: list[str]) -> int:
    stdout("%s version %s" % (CLI_NAME, VERSION))
    return 0


# --- double-only: machine registration ----------------------------------------------------------------

def this_machine_id() -> str:
    path = os.environ.get("FLEETCTL_DOUBLE_MACHINE_ID_FILE", "") or DEFAULT_MACHINE_ID_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            machine_id = handle.read().strip()
    except OSError as exc:
        raise CommandError("unable to read machine ID: %s" % go_os_error("open", path, exc)) from None
    if not machine_id:
        raise CommandError("unable to read machine ID: %s is empty" % path)
    return machine_id


def parse_metadata(raw: str) -> dict[str, str]:
    """fleet's metadata setting: 'key=value,key=value', each part trimmed."""
    metadata = {}
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError("invalid metadata %s: want key=value[,key=value...]" % go_quote(pair))
        metadata[key.strip()] = value.strip()
    return metadata


def run_register_machine(ctx: Context, _args: list[str]) -> int:
    try:
        ttl = int(ctx.flag("ttl"))
        machine = Machine(this_machine_id(), str(ctx.flag("ip")), parse_metadata(str(ctx.flag("metadata"))))
        ctx.registry.set_machine(machine, ttl)
        ctx.play_engine_and_agents()
    except UsageError as exc:
        stderr("Error: %s" % exc)
        return 2
    except CommandError as exc:
        stderr("Error registering machine: %s" % exc)
        return 1
    if not ctx.flag("keep-alive"):
        return 0
    if ttl <= 0:
        stderr("Error: --keep-alive needs --ttl > 0")
        return 2

    def leave(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    try:
        while True:
            time.sleep(max(ttl / 3.0, 0.2))
            try:
                ctx.registry.set_machine(machine, ttl)
            except CommandError as exc:
                stderr("Error refreshing machine registration: %s" % exc)
    finally:
        try:
            ctx.registry.remove_machine(machine.id)
            ctx.play_engine_and_agents()
        except CommandError:
            pass


def run_unregister_machine(ctx: Context, _args: list[str]) -> int:
    try:
        ctx.registry.remove_machine(this_machine_id())
        ctx.play_engine_and_agents()
    except CommandError as exc:
        stderr("Error unregistering machine: %s" % exc)
        return 1
    return 0


@dataclass
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Context, list[str]], int]
    flags: list[Flag] = field(default_factory=list)
    hidden: bool = False
    needs_client: bool = True


def _fields_flag(default: str, keys: list[str], what: str) -> Flag:
    return Flag("fields", str, default, "Columns to print for each %s. Valid fields are %s"
                % (what, go_quote(",".join(sorted(keys)))))


COMMANDS = [
    Command("cat", "cat UNIT", "Output the contents of a submitted unit", run_cat),
    Command("destroy", "destroy UNIT...", "Destroy one or more units in the cluster", run_destroy,
            [BLOCK_ATTEMPTS, NO_BLOCK, MAX_PRINT]),
    Command("journal", "journal [--lines=N] [--ssh-port=N] [-f|--follow] [--output=STRING] UNIT",
            "Print the journal of a unit in the cluster to stdout (double: prints a note only)", run_journal,
            [Flag("lines", int, 10, "Number of recent log lines to return"),
             Flag("follow", bool, False, "Continuously print new entries as they are appended to the journal.",
                  short="f"),
             Flag("sudo", bool, False, "Execute journal command with sudo"),
             Flag("output", str, "short", "Output mode."), SSH_PORT]),
    Command("list-machines", "list-machines [-l|--full] [--no-legend] [--fields]",
            "Enumerate the current hosts in the cluster", run_list_machines,
            [FULL, NO_LEGEND, _fields_flag(DEFAULT_LIST_MACHINES_FIELDS, ["machine", "ip", "metadata"], "Machine")]),
    Command("list-unit-files", "list-unit-files [--fields]", "List the units that exist in the cluster.",
            run_list_unit_files,
            [FULL, NO_LEGEND, MAX_PRINT,
             _fields_flag(DEFAULT_LIST_UNIT_FILES_FIELDS,
                          ["desc", "dstate", "global", "hash", "state", "target", "tmachine", "unit"], "Unit file")]),
    Command("list-units", "list-units [--no-legend] [-l|--full] [--fields]",
            "List the current state of units in the cluster", run_list_units,
            [FULL, NO_LEGEND, _fields_flag(DEFAULT_LIST_UNITS_FIELDS,
                                           ["active", "hash", "load", "machine", "sub", "unit"], "Unit")]),
    Command("load", "load [--no-block|--block-attempts=N] UNIT...",
            "Schedule one or more units in the cluster, first submitting them if necessary.", run_load,
            [SIGN, BLOCK_ATTEMPTS, NO_BLOCK, REPLACE]),
    Command("start", "start [--no-block|--block-attempts=N] UNIT...",
            "Instruct systemd to start one or more units in the cluster, first submitting and loading if "
            "necessary.", run_start, [SIGN, BLOCK_ATTEMPTS, NO_BLOCK, REPLACE]),
    Command("status", "status [--ssh-port=N] UNIT...",
            "Output the status of one or more units in the cluster (double: from the registry)", run_status,
            [SSH_PORT]),
    Command("stop", "stop [--no-block|--block-attempts=N] UNIT...",
            "Instruct systemd to stop one or more units in the cluster.", run_stop, [BLOCK_ATTEMPTS, NO_BLOCK]),
    Command("submit", "submit UNIT...", "Upload one or more units to the cluster without starting them",
            run_submit, [SIGN, REPLACE]),
    Command("unload", "unload [--no-block|--block-attempts=N] UNIT...",
            "Unschedule one or more units in the cluster.", run_unload, [BLOCK_ATTEMPTS, NO_BLOCK]),
    Command("version", "version", "Print the version and exit", run_version, needs_client=False),
    Command("register-machine", "register-machine [--ip ADDR] [--metadata k=v,...] [--ttl S] [--keep-alive]",
            "Double only: register this machine (FLEETCTL_DOUBLE_MACHINE_ID_FILE) in the registry",
            run_register_machine,
            [Flag("ip", str, "", "Public IP to record"), Flag("metadata", str, "", "key=value,key=value"),
             Flag("ttl", int, 0, "etcd TTL of the registration in seconds; 0 keeps it until unregistered"),
             Flag("keep-alive", bool, False, "Stay in the foreground and refresh the registration")],
            hidden=True),
    Command("unregister-machine", "unregister-machine", "Double only: remove this machine's registration",
            run_unregister_machine, hidden=True),
]


def print_help(command: Command | None = None) -> None:
    lines = []
    if command is None:
        lines += ["NAME:", "\t%s - fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init "
                  "system." % CLI_NAME, "",
                  "\tTHIS IS THE coreos_ec2.cluster TEST DOUBLE OF fleetctl %s, NOT fleetctl." % VERSION, "",
                  "USAGE:", "\tfleetctl [global options] <command> [command options] [arguments...]", "",
                  "COMMANDS:"]
        lines += ["\t%s\t%s" % (cmd.name, cmd.summary) for cmd in COMMANDS if not cmd.hidden]
        lines += ["\thelp\tHelp about any command", "", "GLOBAL OPTIONS:"]
        flags = GLOBAL_FLAGS
    else:
        lines += ["NAME:", "\tfleetctl %s - %s" % (command.name, command.summary), "", "USAGE:",
                  "\tfleetctl %s" % command.usage, "", "OPTIONS:"]
        flags = command.flags
    for flag in flags:
        default = "" if flag.kind is bool and not flag.default else "=%s" % (
            go_quote(flag.default) if flag.kind is str else str(flag.default).lower())
        name = ("-%s, " % flag.short if flag.short else "") + "--" + flag.name
        lines.append("\t%s%s\t%s" % (name, default, flag.help))
    sys.stdout.write(tabwrite(lines))


def find_command(name: str) -> Command | None:
    """The command by name, or by a unique prefix (cobra.EnablePrefixMatching)."""
    for command in COMMANDS:
        if command.name == name:
            return command
    matches = [command for command in COMMANDS if command.name.startswith(name) and not command.hidden]
    return matches[0] if len(matches) == 1 and name else None


def main(argv: list[str]) -> int:
    values = {FLAG_ALIASES.get(flag.name, flag.name): flag.default for flag in GLOBAL_FLAGS}
    given: set[str] = set()
    if len(argv) == 0:
        print_help()
        return 0
    if argv[0] in ("--version", "-v"):
        return run_version(Context(Options(values, given), "version"), [])
    try:
        words, rest = parse_args(argv, GLOBAL_FLAGS, values, given, stop_at_positional=True)
        if not words:
            if values["help"]:
                print_help()
                return 0
            raise UsageError("no command given")
        if words[0] == "help":
            command = find_command(rest[0]) if rest else None
            print_help(command)
            return 0
        command = find_command(words[0])
        if command is None:
            raise UsageError("unknown command %s for %s" % (go_quote(words[0]), go_quote(CLI_NAME)))
        for flag in command.flags:
            values.setdefault(flag.name, flag.default)
        args = parse_args(rest, GLOBAL_FLAGS + command.flags, values, given, stop_at_positional=False)[0]
    except UsageError as exc:
        stderr("Error: %s\nRun '%s help' for usage." % (exc, CLI_NAME))
        return 2
    if values["help"]:
        print_help(command)
        return 0
    flags_from_env(values, given)
    options = Options(values, given)
    if command.needs_client:
        problem = client_error(options)
        if problem is not None:
            stderr("Unable to initialize client: %s" % problem)
            return 1
    try:
        return command.run(Context(options, command.name), args)
    except CommandError as exc:
        # A registry error in the middle of a change: fleetctl would print the raw error.
        stderr(str(exc))
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
