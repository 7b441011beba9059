# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetctl command lines, and reading what fleetctl prints.

Nothing here runs a command: the fleet action plugins run these command lines over their connection and
feed the output to the parsers.

Command lines (POSIX sh on the machine, no Python needed there):
- fleetctl_command(subcommand, args=(), fleetctl="fleetctl", flags=None, env=None) -> str: one shell command.
- list_unit_files_command(...), list_units_command(...), list_machines_command(...) -> str: the listings
  the parsers below read, with the same keyword arguments as fleetctl_command.
- cat_parts(names, ...) -> [(key, command)]: `fleetctl cat` of each unit, as sections for sections_script.

fleetctl output (fleetctl/list_unit_files.go, list_units.go, list_machines.go):
- parse_list_unit_files(stdout) -> [{"unit", "hash", "dstate", "state", "target", "target_ip", "global"}]
- parse_list_units(stdout) -> [{"unit", "machine", "ip", "active", "sub"}]
- parse_list_machines(stdout) -> [{"machine", "ip", "metadata"}]
  "-" (fleetctl's empty cell) becomes None; a header line is skipped; anything else raises ClusterError.

Several fleetctl commands in one round trip:
- sections_script(parts, nonce) -> str and parse_sections(stdout, nonce) -> {key: {"rc", "output"}}.
- cat_texts(sections) -> {unit: text}: the units `fleetctl cat` printed.
- listing_error(section, what, host) -> str | None: why a listing failed, in words.
- PATH_PREFIX: the sh line that lets a script find fleetctl in /opt/bin.

`flags` are fleetctl's global flags without dashes ({"endpoint": "http://10.0.0.5:2379", "driver": "etcd"});
`env` are FLEETCTL_* variables, which every fleetctl version reads for the flags not given on its command
line (fleetctl/fleetctl.go, getFlagsFromEnv).

The driver: fleetctl 1.0 talks to its endpoint through the fleet API (driver "API", the default) unless
--driver=etcd is given; pointed at etcd's client URL that way it gets etcd's "404 page not found" for every
fleet API path ("googleapi: got HTTP response code 404"). So an http(s) endpoint with no driver given (in
neither flags nor FLEETCTL_DRIVER) gets --driver=etcd (etcd_driver_needed); driver: API keeps a fleet API
served over TCP. listing_error explains a 404 in those words.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Pattern, Sequence, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import _snippet

# fleet's job states, the `dstate` column of list-unit-files (job/job.go).
JOB_STATES = ("inactive", "loaded", "launched")

LIST_UNIT_FILES_FIELDS = ("unit", "hash", "dstate", "state", "target")
LIST_UNITS_FIELDS = ("unit", "machine", "active", "sub")
LIST_MACHINES_FIELDS = ("machine", "ip", "metadata")

_FLAG_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_ENV_NAME_RE = re.compile(r"^FLEETCTL_[A-Z0-9_]+$")
_HASH_RE = re.compile(r"^[0-9a-f]{7,40}$")
_ROW_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.[A-Za-z]+$")
# A machine as fleetctl prints it: the id (shortened to 8 characters and "..." without --full), then
# "/<public ip>" when the machine has one (fleetctl/fleetctl.go machineFullLegend).
_MACHINE_RE = re.compile(r"^(?P<id>[0-9A-Za-z]+(?:\.\.\.)?)(?:/(?P<ip>\S+))?$")
_MACHINE_ID_RE = re.compile(r"^[0-9A-Za-z]+(?:\.\.\.)?$")
_WORD_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


# ---------------------------------------------------------------------------------------------------
# fleetctl output


def _cell(value: str) -> Optional[str]:
    # fleetctl prints "-" for an empty cell, so no cell is ever empty and a run of tabs is one separator.
    return None if value == "-" else value


def _parse_table(stdout: Any, fields: Sequence[str], command: str) -> List[Tuple[int, List[str]]]:
    """The cells of each data line, with line numbers.

    fleetctl writes through a tabwriter padding with tabs (fleetctl/fleetctl.go), so cells are separated by
    one or more tabs. The header (printed without --no-legend) is the field names upper-cased.
    """
    if stdout is None:
        return []
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ClusterError(f"The output of fleetctl {command} must be text, got {type(stdout).__name__}")
    header = [field.upper() for field in fields]
    rows: List[Tuple[int, List[str]]] = []
    first = True
    for number, raw in enumerate(stdout.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        cells = re.split(r"\t+", line)
        if first and cells == header:
            first = False
            continue
        first = False
        if len(cells) != len(fields):
            raise ClusterError(
                f"Cannot read the output of fleetctl {command}, line {number}: expected {len(fields)} tab-separated "
                f"fields ({', '.join(fields)}), got {len(cells)}: {_snippet(line, 200)}",
                line=number,
            )
        rows.append((number, cells))
    return rows


def _bad_cell(command: str, number: int, field: str, value: str) -> ClusterError:
    return ClusterError(f"Cannot read the output of fleetctl {command}, line {number}: {field} {_snippet(value)} is not valid",
                        line=number)


def _check_cell(command: str, number: int, field: str, value: str, pattern: "re.Pattern[str]") -> str:
    if not pattern.match(value):
        raise _bad_cell(command, number, field, value)
    return value


def _machine_cell(command: str, number: int, field: str, value: str) -> Tuple[Optional[str], Optional[str]]:
    if value == "-":
        return None, None
    match = _MACHINE_RE.match(value)
    if not match:
        raise _bad_cell(command, number, field, value)
    return match.group("id"), match.group("ip")


def parse_list_unit_files(stdout: Any) -> List[Dict[str, Any]]:
    """Rows of `fleetctl list-unit-files --full --no-legend --fields=unit,hash,dstate,state,target`.

    One row per unit in the cluster, templates included (as foo@.service) and each instance under its own
    name with its template's hash. dstate is the desired state fleetctl commands set (inactive, loaded,
    launched), state the current one; both None when fleetctl prints "-" (state always is for global
    units). target is the machine id the unit is scheduled to (target_ip its public IP when fleet knows
    it), None when unscheduled or global; global says whether the unit runs on every machine.
    """
    command = "list-unit-files"
    rows = []
    for number, (unit, unit_hash_, dstate, state, target) in _parse_table(stdout, LIST_UNIT_FILES_FIELDS, command):
        _check_cell(command, number, "unit", unit, _ROW_UNIT_RE)
        _check_cell(command, number, "hash", unit_hash_, _HASH_RE)
        if dstate != "-" and dstate not in JOB_STATES:
            raise _bad_cell(command, number, "dstate", dstate)
        if state != "-":
            _check_cell(command, number, "state", state, _WORD_RE)
        is_global = target == "global"
        machine, ip = (None, None) if is_global else _machine_cell(command, number, "target", target)
        rows.append({
            "unit": unit, "hash": unit_hash_, "dstate": _cell(dstate), "state": _cell(state),
            "target": machine, "target_ip": ip, "global": is_global,
        })
    return rows


def parse_list_units(stdout: Any) -> List[Dict[str, Any]]:
    """Rows of `fleetctl list-units --full --no-legend --fields=unit,machine,active,sub`: one per unit and
    machine it is loaded on (a global unit has one row per machine). active and sub are systemd's
    ActiveState and SubState there; None for "-"."""
    command = "list-units"
    rows = []
    for number, (unit, machine, active, sub) in _parse_table(stdout, LIST_UNITS_FIELDS, command):
        _check_cell(command, number, "unit", unit, _ROW_UNIT_RE)
        machine_id, ip = _machine_cell(command, number, "machine", machine)
        for field, value in (("active", active), ("sub", sub)):
            if value != "-":
                _check_cell(command, number, field, value, _WORD_RE)
        rows.append({"unit": unit, "machine": machine_id, "ip": ip, "active": _cell(active), "sub": _cell(sub)})
    return rows


def _metadata(value: str) -> Dict[str, str]:
    # fleetctl/list_machines.go formatMetadata: key=value pairs sorted by key, joined by commas.
    result: Dict[str, str] = {}
    for pair in value.split(","):
        if pair:
            key, _sep, val = pair.partition("=")
            result[key] = val
    return result


def parse_list_machines(stdout: Any) -> List[Dict[str, Any]]:
    """Rows of `fleetctl list-machines --full --no-legend --fields=machine,ip,metadata`: the machine id, its
    public IP (None for "-") and its metadata as a dict ({} for "-")."""
    command = "list-machines"
    rows = []
    for number, (machine, ip, metadata) in _parse_table(stdout, LIST_MACHINES_FIELDS, command):
        _check_cell(command, number, "machine", machine, _MACHINE_ID_RE)
        if ip != "-" and (" " in ip or "/" in ip):
            raise _bad_cell(command, number, "ip", ip)
        rows.append({"machine": machine, "ip": _cell(ip), "metadata": {} if metadata == "-" else _metadata(metadata)})
    return rows


# ---------------------------------------------------------------------------------------------------
# Shell commands


def _named_values(
    values: Optional[Mapping[str, Any]], name_re: Pattern[str], not_a_dict: str, bad_name: str,
) -> Iterator[Tuple[str, Any]]:
    """(name, value) of fleetctl flags or FLEETCTL_* variables in name order, checked one by one as they are
    taken: a name must match `name_re` (else `bad_name`, formatted with its repr), unset (None) values are
    left out, booleans become fleetctl's true/false."""
    if values is None:
        return
    if not isinstance(values, Mapping):
        raise ValidationError(f"{not_a_dict}, got {type(values).__name__}")
    for key in sorted(values):
        value = values[key]
        if not isinstance(key, str) or not name_re.match(key):
            raise ValidationError(bad_name.format(key))
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        yield key, value


# Stands for "the other half is not known here": script.py renders the flags (_global_words) and the
# FLEETCTL_* variables (_env_assignments, exported at the top of its script) separately.
_UNKNOWN: Any = object()
ETCD_DRIVER_FLAG = "--driver=etcd"
# Where the env is exported into the shell (script.py): a FLEETCTL_DRIVER given there still wins, as it would
# for fleetctl without a --driver flag.
_ETCD_DRIVER_UNLESS_ENV = '"--driver=${FLEETCTL_DRIVER:-etcd}"'


def _flag_values(flags: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The flags given (not None), by their dashed names."""
    return {
        key.replace("_", "-"): value
        for key, value in _named_values(
            flags, _FLAG_NAME_RE, "fleetctl flags must be a dict of flag names and values",
            "fleetctl flag {!r} is not a flag name such as endpoint or request-timeout",
        )
    }


def _env_values(env: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return dict(_named_values(
        env, _ENV_NAME_RE, "fleetctl env must be a dict of FLEETCTL_* variables",
        "fleetctl env {!r}: only FLEETCTL_* variables (e.g. FLEETCTL_ENDPOINT) are passed",
    ))


def _is_http(endpoint: Any) -> bool:
    # fleetctl takes a comma-separated list; the driver decides how all of them are spoken to.
    return str(endpoint).strip().lower().startswith(("http://", "https://"))


def etcd_driver_needed(flags: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether fleetctl 1.0 needs --driver=etcd: its endpoint (the endpoint flag, else FLEETCTL_ENDPOINT) is an
    http(s) URL and no driver is given (neither the driver flag nor FLEETCTL_DRIVER).

    Without it fleetctl 1.0 speaks the fleet API to that URL, and etcd answers 404 (fleetctl/fleetctl.go
    getClient: the API driver unless --driver=etcd).
    """
    given, variables = _flag_values(flags), _env_values(env)
    if "driver" in given or "FLEETCTL_DRIVER" in variables:
        return False
    return _is_http(given.get("endpoint", variables.get("FLEETCTL_ENDPOINT", "")))


def _global_words(fleetctl: str, flags: Optional[Mapping[str, Any]], env: Any = _UNKNOWN) -> List[str]:
    """fleetctl and its global flags, quoted; --driver=etcd added where etcd_driver_needed says so.

    `env` left out means the caller exports the FLEETCTL_* variables into the shell itself (script.py): then
    an http(s) endpoint flag without a driver gets "--driver=${FLEETCTL_DRIVER:-etcd}", which the shell
    resolves as fleetctl would (_env_assignments covers an endpoint given only as FLEETCTL_ENDPOINT).
    """
    if not isinstance(fleetctl, str) or not fleetctl.strip():
        raise ValidationError(f"fleetctl must be the fleetctl command or path, got {fleetctl!r}")
    words = [shlex.quote(fleetctl)]
    given = _flag_values(flags)
    for key, value in given.items():
        if not isinstance(value, (str, int, float)):
            raise ValidationError(f"fleetctl flag {key}: the value must be a string, number or boolean, got {value!r}")
        # Global flags go before the subcommand: older fleetctl parses them with a separate flag set there.
        words.append(shlex.quote(f"--{key}={value}"))
    if env is _UNKNOWN:
        if "driver" not in given and _is_http(given.get("endpoint", "")):
            words.append(_ETCD_DRIVER_UNLESS_ENV)
    elif etcd_driver_needed(flags, env):
        words.append(ETCD_DRIVER_FLAG)
    return words


def _env_assignments(env: Optional[Mapping[str, Any]], flags: Any = _UNKNOWN) -> List[str]:
    """FLEETCTL_X=value words, quoted.

    `flags` left out means the flags are rendered elsewhere (script.py): then an http(s) FLEETCTL_ENDPOINT
    without FLEETCTL_DRIVER also gets FLEETCTL_DRIVER=etcd, which a driver flag on the command line overrides.
    """
    variables = _env_values(env)
    if flags is _UNKNOWN and "FLEETCTL_DRIVER" not in variables and _is_http(variables.get("FLEETCTL_ENDPOINT", "")):
        variables = dict(sorted({**variables, "FLEETCTL_DRIVER": "etcd"}.items()))
    return [f"{key}={shlex.quote(str(value))}" for key, value in variables.items()]


def fleetctl_command(subcommand: str, args: Sequence[str] = (), fleetctl: str = "fleetctl",
                     flags: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, Any]] = None) -> str:
    """One shell command line: `[FLEETCTL_X=v ...] fleetctl [--flag=v ...] <subcommand> <args...>`, all quoted;
    `--driver=etcd` comes last of the flags when etcd_driver_needed(flags, env)."""
    if not isinstance(subcommand, str) or not re.match(r"^[a-z][a-z-]*$", subcommand):
        raise ValidationError(f"{subcommand!r} is not a fleetctl subcommand")
    words = _env_assignments(env, flags) + _global_words(fleetctl, flags, env) + [subcommand]
    words.extend(shlex.quote(str(arg)) for arg in args)
    return " ".join(words)


def list_unit_files_command(fleetctl: str = "fleetctl", flags: Optional[Mapping[str, Any]] = None,
                            env: Optional[Mapping[str, Any]] = None) -> str:
    """The listing parse_list_unit_files reads (and plan_units needs)."""
    return fleetctl_command("list-unit-files", ["--full", "--no-legend", "--fields=" + ",".join(LIST_UNIT_FILES_FIELDS)],
                            fleetctl, flags, env)


def list_units_command(fleetctl: str = "fleetctl", flags: Optional[Mapping[str, Any]] = None,
                       env: Optional[Mapping[str, Any]] = None) -> str:
    """The listing parse_list_units reads."""
    return fleetctl_command("list-units", ["--full", "--no-legend", "--fields=" + ",".join(LIST_UNITS_FIELDS)],
                            fleetctl, flags, env)


def list_machines_command(fleetctl: str = "fleetctl", flags: Optional[Mapping[str, Any]] = None,
                          env: Optional[Mapping[str, Any]] = None) -> str:
    """The listing parse_list_machines reads."""
    return fleetctl_command("list-machines", ["--full", "--no-legend", "--fields=" + ",".join(LIST_MACHINES_FIELDS)],
                            fleetctl, flags, env)


# ---------------------------------------------------------------------------------------------------
# Several fleetctl commands in one round trip

# Flatcar has no fleet: the cluster's cloud-config installs fleetctl into /opt/bin, which a non-login SSH
# command's PATH lacks. Appended, so a fleetctl earlier in PATH (legacy CoreOS ships /usr/bin/fleetctl) wins.
PATH_PREFIX = 'PATH="${PATH:-/usr/bin:/bin}:/opt/bin"; export PATH'
SECTION_MARK = "@@fleet-section"
_SECTION_KEY_RE = re.compile(r"^[A-Za-z0-9_.:@-]+$")
# sh answers 127 for a command it cannot find (POSIX, Shell Command Language 2.8.2).
COMMAND_NOT_FOUND = 127


def sections_script(parts: Sequence[Tuple[str, str]], nonce: str) -> str:
    """One sh script running each (key, command) in turn, each followed by a marker line with its exit code.

    A failing command does not stop the others; stderr goes with stdout into its section so an error
    message stays next to the command it belongs to. `nonce` makes the marker one no output can contain.
    """
    if not re.match(r"^[0-9a-f]{8,}$", nonce or ""):
        raise ValidationError("nonce must be 8 or more lowercase hex digits")
    lines = [PATH_PREFIX]
    for key, command in parts:
        if not _SECTION_KEY_RE.match(key):
            raise ValidationError(f"section key {key!r} may hold letters, digits and _.:@- only")
        # The newline before the marker puts it at the start of a line even after output without one.
        # A subshell, so that a command that exits ends only its own section.
        lines.append(f"( {command}\n) </dev/null 2>&1; printf '\\n{SECTION_MARK} %s %s %s\\n' {nonce} {key} \"$?\"")
    return "\n".join(lines) + "\n"


def parse_sections(stdout: Any, nonce: str) -> Dict[str, Dict[str, Any]]:
    """{key: {"rc": exit code, "output": text}} from the output of sections_script; text outside any section
    (a login banner, say) is dropped, and a section cut off before its marker is missing."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        return {}
    marker = re.compile(rf"^{re.escape(SECTION_MARK)} {re.escape(nonce)} (\S+) (\d+)\r?$")
    sections: Dict[str, Dict[str, Any]] = {}
    pending: List[str] = []
    for line in stdout.split("\n"):
        match = marker.match(line)
        if match:
            # The lines before the marker, joined, are the output exactly: the split took the newline that
            # printf put before the marker.
            sections[match.group(1)] = {"rc": int(match.group(2)), "output": "\n".join(pending)}
            pending = []
        else:
            pending.append(line)
    return sections


def cat_parts(names: Iterable[str], fleetctl: str = "fleetctl", flags: Optional[Mapping[str, Any]] = None,
              env: Optional[Mapping[str, Any]] = None) -> List[Tuple[str, str]]:
    """Sections asking `fleetctl cat` for each unit's current text (diff mode's "before")."""
    return [(f"cat:{name}", fleetctl_command("cat", [name], fleetctl, flags, env)) for name in names]


def cat_texts(sections: Mapping[str, Mapping[str, Any]]) -> Dict[str, str]:
    """Unit texts from cat sections that succeeded; a unit fleet does not have is simply not there."""
    texts = {}
    for key, section in sections.items():
        if key.startswith("cat:") and section.get("rc") == 0:
            text = section.get("output") or ""
            texts[key[4:]] = text if text.endswith("\n") or not text else text + "\n"
    return texts


# What fleetctl's fleet API client (google-api-go-client's googleapi.CheckResponse) prints for an HTTP 404:
# "googleapi: got HTTP response code 404 with body: ..." when the body is no fleet API error (etcd's
# "404 page not found"), "googleapi: Error 404: ..." when it is one.
_API_404_RE = re.compile(r"googleapi: (?:got HTTP response code 404\b|Error 404\b)")
# What fleetctl's etcd client (driver etcd) says when the endpoint answers but is no etcd (etcd client/keys.go).
_NOT_ETCD = "The endpoint is probably not valid etcd cluster endpoint"


def listing_error(section: Optional[Mapping[str, Any]], what: str, host: str) -> Optional[str]:
    """Why a listing section failed, in words, or None when it worked.

    The deploy role retries only the answers of a fleet that is not up yet ("Is fleet running there",
    "fleetctl was not found"); an endpoint that is no fleet API (HTTP 404) is said in other words, since
    waiting does not help.
    """
    if section is None:
        return f"{what} on {host} printed no result: the command was cut off (connection closed or shell error)"
    if section["rc"] == 0:
        return None
    output = " ".join((section.get("output") or "").split())
    output = (output[:600] + "...") if len(output) > 600 else (output or "(nothing)")
    if section["rc"] == COMMAND_NOT_FOUND:
        return (f"fleetctl was not found on {host} (looked in PATH and /opt/bin). Flatcar machines get it from the "
                f"cluster's cloud-config (fleet.service fetches it), legacy CoreOS ships it; output: {output}")
    if _API_404_RE.search(output):
        return (f"{what} failed on {host} with exit code {section['rc']}: {output}. The endpoint answered HTTP 404: it "
                "is not a fleet API. fleetctl speaks the fleet API to its endpoint unless driver=etcd is given: to "
                "reach fleet's registry through etcd there, set fleetctl_flags driver: etcd (or FLEETCTL_DRIVER=etcd); "
                "otherwise point endpoint at the fleet API (by default unix:///var/run/fleet.sock on the machine).")
    if _NOT_ETCD in output:
        return (f"{what} failed on {host} with exit code {section['rc']}: {output}. With driver=etcd (which fleetctl "
                "gets for an http(s) endpoint when no driver is given) the endpoint must be etcd's client URL; for a "
                "fleet API served over http(s), set fleetctl_flags driver: API.")
    return (f"{what} failed on {host} with exit code {section['rc']}: {output}. Is fleet running there and can it "
            "reach etcd?")
