# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploying fleet units with fleetctl on one cluster machine, as pure functions the fleet_units action calls.

Nothing here runs a command: the action plugin runs the listing command, feeds its output to a parser,
asks for a plan, shows it (check mode, diff mode) and runs the rendered script over its connection.
Every fleet behaviour relied on names the fleet or go-systemd source file it comes from.

Unit files (go-systemd unit/deserialize.go and unit/serialize.go, fleet unit/unit.go):
- parse_unit(text, name="unit", line_continuation="keep") -> [(section, option, value), ...]
    the options as fleetctl reads a unit file; ValidationError naming the unit and line on bad content.
- serialize_unit(options) -> str: the text fleet hashes and `fleetctl cat` prints.
- canonical_unit(text, name="unit", line_continuation="keep") -> str: serialize_unit(parse_unit(text)).
- unit_hash(text, name="unit", line_continuation="keep") -> str: the SHA1 hex that list-unit-files shows.
- unit_contents(options) -> {section: {option: [values]}}: fleet's UnitFile.Contents (X-Fleet multi-values split).
- parse_multivalue_line(value) -> [str]: how fleet splits `"a=b" "c=d"` in the [X-Fleet] section.
- normalize_content(text, name="unit") -> str: the text as the deploy script writes it (ends with a newline).

Unit names (fleet unit/unit.go, api/units.go, Documentation/unit-files-and-scheduling.md):
- unit_name_info(name) -> dict | None: full_name, name, prefix, template, instance, is_template, is_instance.
- recognized_unit_type(name) -> bool: whether fleetctl keeps the name (others get ".service" appended).
- validate_unit_name(name) -> dict: unit_name_info of a name fleet accepts; ValidationError otherwise.
- instance_name(template, instance) -> str: "foo@.service", "1" -> "foo@1.service".
- template_instances(template, count=None, instances=None) -> [str]: instances 1..count or the given ones.

fleetctl output (fleetctl/list_unit_files.go, list_units.go, list_machines.go):
- parse_list_unit_files(stdout) -> [{"unit", "hash", "dstate", "state", "target", "target_ip", "global"}]
- parse_list_units(stdout) -> [{"unit", "machine", "ip", "active", "sub"}]
- parse_list_machines(stdout) -> [{"machine", "ip", "metadata"}]
  "-" (fleetctl's empty cell) becomes None; a header line is skipped; anything else raises ClusterError.

Planning (desired services against list-unit-files rows):
- validate_services(services) -> [dict]: the services checked and normalised; ValidationError on bad input.
- plan_units(services, current, line_continuation="keep") -> plan: what to destroy, submit (and which of
  those are replacements), unload, stop, load and start; plan["changed"] says whether anything is to do.
- describe_plan(plan) -> str: one line for a task result.

Running it (POSIX sh on the machine, no Python needed there):
- fleetctl_command(subcommand, args=(), fleetctl="fleetctl", flags=None, env=None) -> str: one shell command.
- list_unit_files_command(...), list_units_command(...), list_machines_command(...) -> str: the listings
  the parsers above read, with the same keyword arguments as fleetctl_command.
- render_script(plan, fleetctl="fleetctl", flags=None, env=None, batch_size=50, block_attempts=None) -> str:
  one script that applies the plan ("" when there is nothing to do).
- script_failure(stderr) -> dict | None: which step of a rendered script failed, from its stderr.

Diff mode:
- unit_diff(plan, before_texts=None) -> [{"before_header", "after_header", "before", "after"[, "prepared"]}]

`flags` are fleetctl's global flags without dashes ({"endpoint": "http://10.0.0.5:2379", "driver": "etcd"});
`env` are FLEETCTL_* variables, which every fleetctl version reads for the flags not given on its command
line (fleetctl/fleetctl.go, getFlagsFromEnv).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

Option = Tuple[str, str, str]

STATES = ("launched", "loaded", "inactive", "absent")
DEFAULT_STATE = "launched"
# fleet's job states, the `dstate` column of list-unit-files (job/job.go).
JOB_STATES = ("inactive", "loaded", "launched")

# The unit types fleetctl submits under their own name (unit/unit.go RecognizedUnitType). api/units.go
# accepts more (target, slice, ...), but fleetctl's unitNameMangle appends ".service" to any other name,
# so foo.target would land in the cluster as foo.target.service.
UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "timer", "path")
# api/units.go unitNameMax, taken from systemd.
UNIT_NAME_MAX = 256
# Documentation/unit-files-and-scheduling.md: [a-zA-Z0-9:_.@-]. api/units.go also lets a backslash through;
# the documented set is what systemd and fleet agree on, and needs no quoting in a shell.
_NAME_CHARS_RE = re.compile(r"^[A-Za-z0-9:_.@-]+$")
# go-systemd SYSTEMD_LINE_MAX: systemd truncates longer lines and go-systemd refuses them.
LINE_MAX = 2048

# go-systemd changed how it reads a value continued with a trailing backslash, and the unit hash with it.
# "keep": the backslash and line break stay in the value (current go-systemd unit/deserialize.go; what
# fleet's last unit/unit_test.go TestDeserializeEscapedMultilines expects, so fleet v1.0.0). "join": each
# backslash-newline becomes one space (older go-systemd; what the same test expected in older fleet).
LINE_CONTINUATIONS = ("keep", "join")

LIST_UNIT_FILES_FIELDS = ("unit", "hash", "dstate", "state", "target")
LIST_UNITS_FIELDS = ("unit", "machine", "active", "sub")
LIST_MACHINES_FIELDS = ("machine", "ip", "metadata")

# Markers of the rendered script, read back by script_failure.
SCRIPT_TAG = "fleet_units"
HEREDOC_DELIMITER = "FLEET_UNIT_EOF"

_SERVICE_KEYS = ("name", "content", "state", "count", "instances")
_FLAG_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_ENV_NAME_RE = re.compile(r"^FLEETCTL_[A-Z0-9_]+$")
_HASH_RE = re.compile(r"^[0-9a-f]{7,40}$")
_ROW_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.[A-Za-z]+$")
# A machine as fleetctl prints it: the id (shortened to 8 characters and "..." without --full), then
# "/<public ip>" when the machine has one (fleetctl/fleetctl.go machineFullLegend).
_MACHINE_RE = re.compile(r"^(?P<id>[0-9A-Za-z]+(?:\.\.\.)?)(?:/(?P<ip>\S+))?$")
_MACHINE_ID_RE = re.compile(r"^[0-9A-Za-z]+(?:\.\.\.)?$")
_WORD_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_FAILURE_RE = re.compile(rf"^{SCRIPT_TAG}: step (\d+)/(\d+) failed with exit code (\d+): (.*)$")
_DIGITS_RE = re.compile(r"([0-9]+)")
# Go's unicode.IsSpace is Python's str.isspace without the ASCII separators 0x1c-0x1f.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


# ---------------------------------------------------------------------------------------------------
# Small helpers


def _go_isspace(char: str) -> bool:
    return char.isspace() and char not in _NOT_GO_SPACE


def _go_trim(text: str) -> str:
    """strings.TrimSpace: Python's strip() would also remove 0x1c-0x1f, which Go keeps."""
    start, end = 0, len(text)
    while start < end and _go_isspace(text[start]):
        start += 1
    while end > start and _go_isspace(text[end - 1]):
        end -= 1
    return text[start:end]


def _natural_key(text: str) -> List[Any]:
    # foo@2 before foo@10; the split alternates text and digits, so items compare like with like.
    return [int(part) if index % 2 else part for index, part in enumerate(_DIGITS_RE.split(text))]


def _unit_key(name: str) -> Tuple[Any, ...]:
    """Units of one prefix together, a template before its instances, instances in natural order."""
    info = unit_name_info(name)
    if info is None:
        return (_natural_key(name), "", 0, [""], name)
    suffix = name[len(info["name"]):]
    return (_natural_key(info["prefix"]), suffix, 1 if info["is_instance"] else 0, _natural_key(info["instance"]), name)


def _natural(names: Iterable[str]) -> List[str]:
    return sorted(names, key=_unit_key)


def _snippet(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_continuation(line_continuation: str) -> None:
    if line_continuation not in LINE_CONTINUATIONS:
        raise ValidationError(
            f"line_continuation must be one of {', '.join(LINE_CONTINUATIONS)}, got {line_continuation!r}"
        )


# ---------------------------------------------------------------------------------------------------
# Unit files: go-systemd's lexer, step for step


class _Reader:
    """A cursor over the unit text that knows its line number, like go-systemd's bufio.Reader."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def read(self) -> Optional[str]:
        if self.pos >= len(self.text):
            return None
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def unread(self) -> None:
        self.pos -= 1
        if self.text[self.pos] == "\n":
            self.line -= 1

    def read_through(self, delimiter: str) -> Optional[str]:
        """The text before the next delimiter, which is consumed; None when there is none."""
        index = self.text.find(delimiter, self.pos)
        if index == -1:
            return None
        chunk = self.text[self.pos:index]
        self.line += chunk.count("\n")
        self.pos = index + 1
        return chunk

    def to_eol(self) -> Tuple[str, bool]:
        """go-systemd toEOL: the rest of the line without its terminator, and whether input ended.

        It trims a trailing "\\r" before the "\\n", so only a "\\r" right at the end of input goes: the "\\r"
        of a CRLF line stays (and stops that line from ending in a continuation backslash).
        """
        index = self.text.find("\n", self.pos)
        if index == -1:
            line = self.text[self.pos:]
            self.pos = len(self.text)
            return (line[:-1] if line.endswith("\r") else line), True
        line = self.text[self.pos:index]
        self.pos = index + 1
        self.line += 1
        return line, False


def _unit_error(unit: str, line: int, cause: str) -> ValidationError:
    return ValidationError(f"Unit {unit}: line {line}: {cause}", unit=unit, line=line)


def _check_line_lengths(text: str, unit: str) -> None:
    # go-systemd refuses a line of LINE_MAX bytes or more (it peeks LINE_MAX bytes for "\r" or "\n").
    for number, line in enumerate(text.split("\n"), 1):
        for piece in line.split("\r"):
            if len(piece.encode("utf-8", "surrogatepass")) >= LINE_MAX:
                raise _unit_error(
                    unit, number, f"longer than {LINE_MAX - 1} bytes; systemd truncates such lines and fleet refuses them"
                )


def _skip_comment(reader: _Reader) -> None:
    # go-systemd ignoreLineFunc: a comment continues while its line ends in a backslash (one space allowed after).
    while True:
        line, _eof = reader.to_eol()
        if line.endswith(" "):
            line = line[:-1]
        if not line.endswith("\\"):
            return


def _read_section(reader: _Reader, unit: str) -> str:
    start = reader.line
    # ReadBytes(']'): the name runs to the next ']', across line breaks if need be.
    section = reader.read_through("]")
    if section is None:
        raise _unit_error(unit, start, "section header '[' has no closing ']'")
    end = reader.line
    garbage, _eof = reader.to_eol()
    if _go_trim(garbage):
        raise _unit_error(unit, end, f"unexpected text after section header [{section}]: {_snippet(_go_trim(garbage))}")
    return section


def _read_option_name(reader: _Reader, unit: str) -> str:
    start = reader.line
    partial: List[str] = []
    while True:
        char = reader.read()
        if char is None or char in "\r\n":
            found = "".join(partial)
            where = "at the end of the file" if char is None else "on this line"
            raise _unit_error(unit, start, f"expected Name=Value, found no '=' {where}: {_snippet(found)}")
        if char == "=":
            return _go_trim("".join(partial))
        partial.append(char)


def _read_value_keep(reader: _Reader) -> str:
    # Current go-systemd lexOptionValueFunc: a line ending in a backslash continues the value and the
    # backslash and line break stay in it; a blank line ends it.
    partial: List[str] = []
    while True:
        line, eof = reader.to_eol()
        if not _go_trim(line):
            break
        partial.append(line)
        if not line.endswith("\\"):
            break
        if not eof:
            partial.append("\n")
    value = "".join(partial)
    if value.endswith("\n"):
        # A continuation followed by a blank line keeps its line break.
        return _go_trim(value) + "\n"
    return _go_trim(value)


def _read_value_join(reader: _Reader) -> str:
    # The older lexOptionValueFunc: each trailing backslash becomes a space and the next line joins the value.
    partial: List[str] = []
    while True:
        line, _eof = reader.to_eol()
        if not line.endswith("\\"):
            partial.append(line)
            break
        partial.append(line[:-1])
        partial.append(" ")
    return _go_trim("".join(partial))


def parse_unit(text: str, name: str = "unit", line_continuation: str = "keep") -> List[Option]:
    """The options of a unit file in file order, as go-systemd's unit.Deserialize reads them for fleetctl.

    Sections open with `[Name]` (nothing but blanks may follow on that line); options are `Name=Value`
    with both sides trimmed; lines starting with `#` or `;` are comments; repeated options are kept in
    order. Anything before the first section header is skipped, except that a `[` there opens a section.
    A value line ending in a backslash continues on the next line (see LINE_CONTINUATIONS for the two ways
    fleet versions read it); a comment line ending in a backslash continues the comment. Sections without
    options leave no trace. Raises ValidationError naming the unit and line for a header without `]`, text
    after a header, a line without `=` inside a section, and lines of LINE_MAX bytes or more.
    """
    _check_continuation(line_continuation)
    if not isinstance(text, str):
        raise ValidationError(f"Unit {name}: the content must be text, got {type(text).__name__}")
    if "\x00" in text:
        raise _unit_error(name, text[: text.index("\x00")].count("\n") + 1, "contains a NUL character")
    _check_line_lengths(text, name)
    read_value = _read_value_keep if line_continuation == "keep" else _read_value_join

    reader = _Reader(text)
    options: List[Option] = []
    section: Optional[str] = None
    while True:
        char = reader.read()
        if char is None:
            return options
        if char == "[":
            section = _read_section(reader, name)
        elif char in "#;":
            _skip_comment(reader)
        elif section is None or _go_isspace(char):
            # Before the first section go-systemd skips everything but '[' and comments, one character at a time.
            continue
        else:
            reader.unread()
            option = _read_option_name(reader, name)
            options.append((section, option, read_value(reader)))


def serialize_unit(options: Sequence[Option]) -> str:
    """go-systemd unit.Serialize: sections in order of first appearance, each `[Section]` then its `Name=Value`
    lines in order, a blank line between sections, "" for no options.

    Fleet hashes exactly this text (unit/unit.go UnitFile.Bytes), and `fleetctl cat` prints it.
    """
    order: List[str] = []
    by_section: Dict[str, List[Tuple[str, str]]] = {}
    for section, option, value in options:
        if section not in by_section:
            order.append(section)
            by_section[section] = []
        by_section[section].append((option, value))
    parts: List[str] = []
    for index, section in enumerate(order):
        parts.append(f"[{section}]\n")
        parts.extend(f"{option}={value}\n" for option, value in by_section[section])
        if index < len(order) - 1:
            parts.append("\n")
    return "".join(parts)


def canonical_unit(text: str, name: str = "unit", line_continuation: str = "keep") -> str:
    """The unit as fleet stores and prints it: comments and blank lines gone, options grouped by section."""
    return serialize_unit(parse_unit(text, name, line_continuation))


def unit_hash(text: str, name: str = "unit", line_continuation: str = "keep") -> str:
    """fleet's UnitFile.Hash() as hex (unit/unit.go): SHA1 of the serialised options.

    "[Service]\\nExecStart=/bin/sleep 100\\n" gives 1c6fb6f3684bafb0c173d8b8b957ceff031180c1 (unit/unit_test.go).
    Formatting, comments and blank lines do not change the hash; option order does.
    """
    serialized = canonical_unit(text, name, line_continuation)
    try:
        data = serialized.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"Unit {name}: the content is not valid Unicode text") from None
    # SHA1 because fleet identifies unit files by it, not for any security property.
    return hashlib.sha1(data).hexdigest()


def parse_multivalue_line(value: str) -> List[str]:
    """fleet's parseMultivalueLine (unit/unit.go): `"a=b" "c=d"` -> ["a=b", "c=d"]; anything not wrapped in
    double quotes is one value. Quotes toggle, spaces outside quotes split, nothing is unescaped."""
    if not (value.startswith('"') and value.endswith('"')):
        return [value]
    values: List[str] = []
    current: List[str] = []
    quoted = False
    for char in value:
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


def unit_contents(options: Sequence[Option]) -> Dict[str, Dict[str, List[str]]]:
    """fleet's UnitFile.Contents (unit/unit.go mapOptions): values per section and option, in order, with
    [X-Fleet] values split by parse_multivalue_line."""
    contents: Dict[str, Dict[str, List[str]]] = {}
    for section, option, value in options:
        values = parse_multivalue_line(value) if section == "X-Fleet" else [value]
        contents.setdefault(section, {}).setdefault(option, []).extend(values)
    return contents


def normalize_content(text: Any, name: str = "unit") -> str:
    """The unit text as the deploy script writes it: a here-document always ends in a line break, so one is
    added when missing. Hashes are computed on this text, so the plan matches what fleetctl reads there."""
    if not isinstance(text, str):
        raise ValidationError(f"Unit {name}: content must be the unit file as text, got {type(text).__name__}")
    if "\x00" in text:
        raise _unit_error(name, text[: text.index("\x00")].count("\n") + 1, "contains a NUL character")
    return text if text.endswith("\n") else text + "\n"


# ---------------------------------------------------------------------------------------------------
# Unit names


def unit_name_info(name: str) -> Optional[Dict[str, Any]]:
    """fleet's NewUnitNameInfo (unit/unit.go), None for a name without a '.'.

    The instance is everything between the first '@' and the last '.': "foo@bar@baz.service" is instance
    "bar@baz" of template "foo@.service".
    """
    if not isinstance(name, str):
        return None
    dot = name.rfind(".")
    if dot == -1:
        return None
    base, suffix = name[:dot], name[dot:]
    at = base.find("@")
    if at == -1:
        prefix, template, instance = base, "", ""
    else:
        prefix, template, instance = base[:at], f"{base[:at]}@{suffix}", base[at + 1:]
    return {
        "full_name": name, "name": base, "prefix": prefix, "template": template, "instance": instance,
        "is_instance": bool(instance), "is_template": bool(template) and not instance,
    }


def recognized_unit_type(name: str) -> bool:
    """fleet's RecognizedUnitType (unit/unit.go): whether the name ends in one of UNIT_TYPES."""
    return isinstance(name, str) and any(name.endswith("." + unit_type) for unit_type in UNIT_TYPES)


def validate_unit_name(name: Any) -> Dict[str, Any]:
    """unit_name_info of a name fleet accepts and fleetctl submits under that same name.

    The rules of api/units.go ValidateName and Documentation/unit-files-and-scheduling.md: at most 256
    characters, `string.suffix` or `string@instance.suffix` with characters from [a-zA-Z0-9:_.@-], no
    leading '@', and a suffix fleet schedules (UNIT_TYPES).
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"A unit name must be a non-empty string, got {name!r}")
    if len(name) > UNIT_NAME_MAX:
        raise ValidationError(f"Unit name {name[:40]}... is longer than {UNIT_NAME_MAX} characters")
    dot = name.rfind(".")
    if dot == -1 or dot == len(name) - 1:
        raise ValidationError(f"Unit name {name!r} needs a type suffix, e.g. {name.rstrip('.')}.service")
    suffix = name[dot + 1:]
    if dot == 0:
        raise ValidationError(f"Unit name {name!r} needs a name before .{suffix}")
    if suffix not in UNIT_TYPES:
        raise ValidationError(
            f"Unit name {name!r}: fleet schedules only {', '.join('.' + t for t in UNIT_TYPES)} units, not .{suffix} "
            f"(fleetctl would submit it as {name}.service)"
        )
    if not _NAME_CHARS_RE.match(name[:dot]):
        bad = sorted({char for char in name[:dot] if not _NAME_CHARS_RE.match(char)})
        raise ValidationError(
            f"Unit name {name!r} contains {', '.join(repr(c) for c in bad)}; fleet allows letters, digits and :_.@-"
        )
    if name.startswith("@"):
        raise ValidationError(f"Unit name {name!r} cannot start with '@'")
    info = unit_name_info(name)
    if info is None:  # pragma: no cover - the checks above guarantee a '.'
        raise ValidationError(f"Unit name {name!r} is not a unit name")
    return info


def instance_name(template: str, instance: Any) -> str:
    """The instance unit of a template: ("foo@.service", 1) -> "foo@1.service". Raises ValidationError for
    a non-template or an instance name fleet would refuse."""
    info = validate_unit_name(template)
    if not info["is_template"]:
        raise ValidationError(f"{template} is not a template unit (a name like foo@.service)")
    if isinstance(instance, bool) or not isinstance(instance, (str, int)):
        raise ValidationError(f"Instances of {template} must be strings or numbers, got {instance!r}")
    text = str(instance)
    if not text or not _NAME_CHARS_RE.match(text):
        raise ValidationError(f"Instance {text!r} of {template}: use letters, digits and :_.@- only, and at least one")
    name = f"{info['prefix']}@{text}.{template.rsplit('.', 1)[1]}"
    validate_unit_name(name)
    return name


def _whole_number(value: Any, option: str) -> int:
    # Digit strings are accepted because `-e` extra vars arrive as strings; a bool is a mistake.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{option} must be a whole number, got {value!r}")
    return value


def template_instances(template: str, count: Any = None, instances: Any = None) -> List[str]:
    """The instance units of a template: foo@1..foo@<count>, or one per entry of `instances`, in that order.

    Exactly one of count (>= 0) and instances (a list of distinct strings or numbers) must be given.
    """
    if (count is None) == (instances is None):
        raise ValidationError(f"{template}: give either count or instances")
    if count is not None:
        number = _whole_number(count, f"{template}: count")
        if number < 0:
            raise ValidationError(f"{template}: count must be 0 or more, got {number}")
        return [instance_name(template, index) for index in range(1, number + 1)]
    if isinstance(instances, (str, bytes, Mapping)) or not isinstance(instances, Iterable):
        raise ValidationError(f"{template}: instances must be a list, got {type(instances).__name__}")
    names: List[str] = []
    for instance in instances:
        name = instance_name(template, instance)
        if name in names:
            raise ValidationError(f"{template}: instance {instance!r} is listed twice")
        names.append(name)
    return names


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
# Planning


def _service_entry(index: int, service: Any) -> Dict[str, Any]:
    where = f"services[{index}]"
    if not isinstance(service, Mapping):
        raise ValidationError(f"{where} must be a dict with name, content and state, got {type(service).__name__}")
    unknown = sorted(str(key) for key in service if key not in _SERVICE_KEYS)
    if unknown:
        raise ValidationError(f"{where}: unknown option(s) {', '.join(unknown)}; expected {', '.join(_SERVICE_KEYS)}")
    name = service.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}: name must be a unit name such as web.service, got {name!r}")
    where = f"services[{index}] ({name})"
    try:
        info = validate_unit_name(name)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.msg}") from None

    state = service.get("state")
    state = DEFAULT_STATE if state is None else state
    if state not in STATES:
        raise ValidationError(f"{where}: state must be one of {', '.join(STATES)}, got {state!r}")
    count, instances = service.get("count"), service.get("instances")
    if count is not None and instances is not None:
        raise ValidationError(f"{where}: give count or instances, not both")
    if (count is not None or instances is not None) and not info["is_template"]:
        raise ValidationError(f"{where}: count and instances apply to template units (a name like foo@.service) only")
    if (count is not None or instances is not None) and state == "absent":
        raise ValidationError(f"{where}: state=absent removes the template and all its instances; drop count/instances")
    if info["is_template"] and count is None and instances is None and state in ("launched", "loaded"):
        # api/units.go refuses any state but inactive for a template ("cannot activate template").
        raise ValidationError(
            f"{where}: fleet cannot {'start' if state == 'launched' else 'load'} a template itself; give count or "
            "instances to run instances of it, or state=inactive to only submit it"
        )
    try:
        names = template_instances(name, count, instances) if count is not None or instances is not None else None
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.msg}") from None

    content = None
    if state != "absent":
        if service.get("content") is None:
            raise ValidationError(f"{where}: content (the unit file text) is required unless state=absent")
        content = normalize_content(service.get("content"), name)
        if not parse_unit(content, name):
            # api/units.go: "unit does not exist and options field empty".
            raise ValidationError(f"{where}: the unit file has no options; fleet refuses an empty unit")
    return {"name": name, "state": state, "content": content, "instances": names, "info": info}


def validate_services(services: Any) -> List[Dict[str, Any]]:
    """The desired services checked and normalised, before anything is listed or changed.

    Each service is a dict: name (a unit name), content (the unit file text; not needed for absent),
    state (launched, loaded, inactive or absent; default launched) and, for a template (foo@.service),
    count (instances foo@1..foo@<count>) or instances (their names). Returns dicts with name, state,
    content (normalize_content, None when absent), instances (the instance unit names of a template with
    count or instances, else None) and info (unit_name_info). Raises ValidationError naming the service.
    """
    if services is None:
        return []
    if isinstance(services, (str, bytes, Mapping)) or not isinstance(services, Iterable):
        raise ValidationError(f"services must be a list of dicts, got {type(services).__name__}")
    entries = [_service_entry(index, service) for index, service in enumerate(services)]

    seen: Dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry["name"] in seen:
            raise ValidationError(f"services[{index}] ({entry['name']}): already listed as services[{seen[entry['name']]}]")
        seen[entry["name"]] = index
    by_name = {entry["name"]: entry for entry in entries}
    for index, entry in enumerate(entries):
        template = by_name.get(entry["info"]["template"]) if entry["info"]["is_instance"] else None
        if template is not None and (template["instances"] is not None or template["state"] == "absent"):
            # The template's entry decides every instance: it would destroy this one or fight over it.
            how = "state=absent" if template["state"] == "absent" else "count/instances"
            raise ValidationError(
                f"services[{index}] ({entry['name']}): its template {template['name']} is listed with {how}, which "
                "manages all its instances; list the instance there instead"
            )
    return entries


def _check_rows(rows: Any) -> Dict[str, Mapping[str, Any]]:
    if rows is None:
        return {}
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ValidationError(f"current must be the rows of parse_list_unit_files, got {type(rows).__name__}")
    by_name: Dict[str, Mapping[str, Any]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("unit"), str):
            raise ValidationError(f"current[{index}] is not a list-unit-files row: expected a dict with 'unit'")
        by_name.setdefault(row["unit"], row)
    return by_name


def _is_template(name: str) -> bool:
    info = unit_name_info(name)
    return bool(info and info["is_template"])


def _hash_matches(listed: Any, wanted: str) -> bool:
    # Without --full fleetctl prints 7 characters (unit.Hash.Short); accept a prefix so such rows still compare.
    return isinstance(listed, str) and len(listed) >= 7 and wanted.startswith(listed.lower())


def _state_action(current: Optional[str], wanted: str, current_state: Optional[str]) -> Optional[str]:
    """The fleetctl command that moves a unit's desired state from `current` to `wanted`, None if none."""
    if current == wanted:
        return None
    if wanted == "launched":
        return "start"
    if wanted == "inactive":
        return "unload"
    # wanted == "loaded". fleetctl stop refuses a unit whose current state is inactive and skips one that is
    # already loaded without changing its desired state (fleetctl/stop.go); load sets it in every case.
    if current == "launched" and current_state == "launched":
        return "stop"
    return "load"


def _before(row: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if row is None:
        return None
    return {"hash": row.get("hash"), "dstate": row.get("dstate"), "state": row.get("state")}


def plan_units(services: Any, current: Any, line_continuation: str = "keep") -> Dict[str, Any]:
    """What to run to bring the cluster's fleet units to the desired services.

    `current` are the rows of parse_list_unit_files. Services are checked first (validate_services).
    A template is kept submitted (desired state inactive, which is all fleet allows it) and its instances
    take the service's state and share its hash, as fleetctl creates an instance from its template.
    - destroy: units of absent services (an absent template takes all its instances along), instances of a
      template with count/instances that are not in the desired set, and units whose hash differs.
    - submit: new units and those replaced (destroyed because the hash differs), templates first.
    - unload, stop, load, start: desired-state changes (submit leaves a unit inactive; load -> loaded,
      start -> launched, stop -> loaded from launched, unload -> inactive). A unit in its desired state
      with the desired hash needs nothing; units no service names are left alone.
    Also: replace (the units destroyed and submitted again), write (unit files the script writes: what is
    submitted, and the template of each submitted instance), texts (the desired text of every plain unit
    and template), units (one entry per desired or destroyed unit: name, source (whose text it uses),
    before {hash, dstate, state} or None, after {hash, dstate} or None, actions in the order they run),
    line_continuation, and changed.
    """
    _check_continuation(line_continuation)
    entries = validate_services(services)
    rows = _check_rows(current)

    texts: Dict[str, str] = {}
    desired: Dict[str, Dict[str, Any]] = {}
    destroy: Dict[str, str] = {}  # name -> why
    managed: Dict[str, Set[str]] = {}  # template -> the instances it keeps
    absent_templates: Set[str] = set()
    for entry in entries:
        name = entry["name"]
        if entry["state"] == "absent":
            if name in rows:
                destroy[name] = "absent"
            if entry["info"]["is_template"]:
                absent_templates.add(name)
            continue
        texts[name] = entry["content"]
        digest = unit_hash(entry["content"], name, line_continuation)
        if entry["info"]["is_template"]:
            desired[name] = {"hash": digest, "dstate": "inactive", "source": name}
            if entry["instances"] is not None:
                managed[name] = set(entry["instances"])
                for instance in entry["instances"]:
                    desired[instance] = {"hash": digest, "dstate": entry["state"], "source": name}
        else:
            desired[name] = {"hash": digest, "dstate": entry["state"], "source": name}

    for unit in rows:
        info = unit_name_info(unit)
        if not info or not info["is_instance"]:
            continue
        if info["template"] in absent_templates:
            destroy.setdefault(unit, "absent")
        elif info["template"] in managed and unit not in managed[info["template"]]:
            destroy.setdefault(unit, "surplus")

    submit: List[str] = []
    replace: List[str] = []
    transitions: Dict[str, List[str]] = {"unload": [], "stop": [], "load": [], "start": []}
    units: Dict[str, Dict[str, Any]] = {}
    for name, want in desired.items():
        row = rows.get(name)
        actions: List[str] = []
        current_dstate = row.get("dstate") if row is not None else None
        current_state = row.get("state") if row is not None else None
        if row is None or not _hash_matches(row.get("hash"), want["hash"]):
            if row is not None:
                destroy[name] = "replace"
                replace.append(name)
                actions.append("destroy")
            submit.append(name)
            actions.append("submit")
            current_dstate, current_state = "inactive", "inactive"
        action = _state_action(current_dstate, want["dstate"], current_state)
        if action:
            transitions[action].append(name)
            actions.append(action)
        units[name] = {"name": name, "source": want["source"], "before": _before(row),
                       "after": {"hash": want["hash"], "dstate": want["dstate"]}, "actions": actions}
    for name, why in destroy.items():
        if why != "replace":
            units[name] = {"name": name, "source": None, "before": _before(rows.get(name)), "after": None,
                           "actions": ["destroy"]}

    # Templates go first so that each instance submitted after them finds its template in the registry.
    submit.sort(key=lambda n: (0 if _is_template(n) else 1, _unit_key(n)))
    write = {name if name in texts else desired[name]["source"] for name in submit}
    plan: Dict[str, Any] = {
        "destroy": _natural(destroy), "submit": submit, "replace": _natural(replace),
        "unload": _natural(transitions["unload"]), "stop": _natural(transitions["stop"]),
        "load": _natural(transitions["load"]), "start": _natural(transitions["start"]),
        "write": _natural(write), "texts": texts,
        "units": [units[name] for name in _natural(units)],
        "line_continuation": line_continuation,
    }
    plan["changed"] = any(plan[key] for key in ("destroy", "submit", "unload", "stop", "load", "start"))
    return plan


def describe_plan(plan: Mapping[str, Any]) -> str:
    """One line for a task result: "destroy foo@4.service; submit web.service (replaced); start web.service"."""
    parts = []
    replaced = set(plan.get("replace") or [])
    for verb in ("destroy", "submit", "unload", "stop", "load", "start"):
        names = list(plan.get(verb) or [])
        if not names:
            continue
        if verb == "submit" and replaced:
            names = [f"{name} (replaced)" if name in replaced else name for name in names]
        parts.append(f"{verb} {', '.join(names)}")
    return "; ".join(parts) if parts else "all fleet units are as desired"


# ---------------------------------------------------------------------------------------------------
# Shell commands and the deploy script


def _global_words(fleetctl: str, flags: Optional[Mapping[str, Any]]) -> List[str]:
    if not isinstance(fleetctl, str) or not fleetctl.strip():
        raise ValidationError(f"fleetctl must be the fleetctl command or path, got {fleetctl!r}")
    words = [shlex.quote(fleetctl)]
    if flags is None:
        return words
    if not isinstance(flags, Mapping):
        raise ValidationError(f"fleetctl flags must be a dict of flag names and values, got {type(flags).__name__}")
    for key in sorted(flags):
        value = flags[key]
        if not isinstance(key, str) or not _FLAG_NAME_RE.match(key):
            raise ValidationError(f"fleetctl flag {key!r} is not a flag name such as endpoint or request-timeout")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, (str, int, float)):
            raise ValidationError(f"fleetctl flag {key}: the value must be a string, number or boolean, got {value!r}")
        # Global flags go before the subcommand: older fleetctl parses them with a separate flag set there.
        words.append(shlex.quote(f"--{key.replace('_', '-')}={value}"))
    return words


def _env_assignments(env: Optional[Mapping[str, Any]]) -> List[str]:
    if env is None:
        return []
    if not isinstance(env, Mapping):
        raise ValidationError(f"fleetctl env must be a dict of FLEETCTL_* variables, got {type(env).__name__}")
    assignments = []
    for key in sorted(env):
        value = env[key]
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise ValidationError(f"fleetctl env {key!r}: only FLEETCTL_* variables (e.g. FLEETCTL_ENDPOINT) are passed")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        assignments.append(f"{key}={shlex.quote(str(value))}")
    return assignments


def fleetctl_command(subcommand: str, args: Sequence[str] = (), fleetctl: str = "fleetctl",
                     flags: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, Any]] = None) -> str:
    """One shell command line: `[FLEETCTL_X=v ...] fleetctl [--flag=v ...] <subcommand> <args...>`, all quoted."""
    if not isinstance(subcommand, str) or not re.match(r"^[a-z][a-z-]*$", subcommand):
        raise ValidationError(f"{subcommand!r} is not a fleetctl subcommand")
    words = _env_assignments(env) + _global_words(fleetctl, flags) + [subcommand]
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


def _delimiter(texts: Iterable[str]) -> str:
    # A quoted here-document ends at the first line equal to its delimiter, so it must not occur in any text.
    texts = list(texts)
    candidate, number = HEREDOC_DELIMITER, 0
    while any(candidate in text for text in texts):
        number += 1
        candidate = f"{HEREDOC_DELIMITER}_{number}"
    return candidate


def _batches(names: Sequence[str], size: int) -> List[List[str]]:
    return [list(names[start:start + size]) for start in range(0, len(names), size)]


def render_script(plan: Mapping[str, Any], fleetctl: str = "fleetctl", flags: Optional[Mapping[str, Any]] = None,
                  env: Optional[Mapping[str, Any]] = None, batch_size: int = 50,
                  block_attempts: Optional[int] = None) -> str:
    """A POSIX sh script that applies the plan on a cluster machine, "" when the plan changes nothing.

    It writes the unit files into a private temporary directory (quoted here-documents), then runs
    fleetctl destroy, submit, unload, stop, load and start with up to batch_size units per command, and
    removes the directory on exit. Instances are submitted as <dir>/foo@1.service without a file of their
    own: fleetctl then takes the template from the registry, or <dir>/foo@.service (fleetctl/fleetctl.go
    getUnitFileFromTemplate). The first failing command stops the script with its exit code after a line
    `fleet_units: step <i>/<n> failed with exit code <rc>: <what>` on stderr (see script_failure).
    block_attempts None passes --no-block to load/start/stop/unload; a number N passes --block-attempts=N
    (0: wait as long as it takes). destroy and submit take no such flags in every fleetctl version.
    """
    if not isinstance(plan, Mapping) or "changed" not in plan:
        raise ValidationError("render_script needs a plan from plan_units")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    if block_attempts is not None and (isinstance(block_attempts, bool) or not isinstance(block_attempts, int)
                                       or block_attempts < 0):
        raise ValidationError(f"block_attempts must be None or a whole number of 0 or more, got {block_attempts!r}")
    if not plan["changed"]:
        return ""
    command = " ".join(_global_words(fleetctl, flags))
    block = ["--no-block"] if block_attempts is None else [f"--block-attempts={block_attempts}"]
    texts: Mapping[str, str] = plan["texts"]
    write = list(plan["write"])
    delimiter = _delimiter(texts[name] for name in write)

    # (shell line(s), description for the failure message); the step number is added below.
    steps: List[Tuple[List[str], str]] = []
    for name in write:
        steps.append(([f"cat > \"$tmp\"/{shlex.quote(name)} <<'{delimiter}'", texts[name] + delimiter],
                      f"write unit file {name}"))
    for verb in ("destroy", "submit", "unload", "stop", "load", "start"):
        for batch in _batches(list(plan[verb]), batch_size):
            if verb == "submit":
                words = ['"$tmp"/' + shlex.quote(name) for name in batch]
            else:
                words = ([] if verb == "destroy" else block) + [shlex.quote(name) for name in batch]
            steps.append(([f"{command} {verb} {' '.join(words)}"], f"fleetctl {verb} {' '.join(batch)}"))

    total = len(steps) + (1 if write else 0)
    lines = [
        f"# {SCRIPT_TAG}: apply a fleet unit plan with fleetctl (POSIX sh; no Python needed here)",
        "set -u",
        "umask 077",
    ]
    for assignment in _env_assignments(env):
        lines.append(f"{assignment}; export {assignment.split('=', 1)[0]}")
    lines += [
        "fail() {",
        f"    printf '{SCRIPT_TAG}: step %s failed with exit code %s: %s\\n' \"$1\" \"$2\" \"$3\" >&2",
        "    exit \"$2\"",
        "}",
    ]
    number = 0
    if write:
        number += 1
        lines += [
            f"tmp=$(mktemp -d \"${{TMPDIR:-/tmp}}/{SCRIPT_TAG}.XXXXXXXX\") || fail {number}/{total} $? "
            + shlex.quote("create a temporary directory"),
            # The EXIT trap removes the directory; the signal traps exit so that it runs then too.
            "trap 'rm -rf \"$tmp\"' EXIT",
            "trap 'exit 129' HUP",
            "trap 'exit 130' INT",
            "trap 'exit 143' TERM",
        ]
    for shell, what in steps:
        number += 1
        # `cmd || fail` reports the failure; a here-document body follows its command line unchanged.
        lines.append(f"{shell[0]} || fail {number}/{total} $? {shlex.quote(what)}")
        lines.extend(shell[1:])
    return "\n".join(lines) + "\n"


def script_failure(stderr: Any) -> Optional[Dict[str, Any]]:
    """The failed step of a rendered script from its stderr: {"step", "steps", "rc", "what"}, None if none."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    if not isinstance(stderr, str):
        return None
    for line in reversed(stderr.splitlines()):
        match = _FAILURE_RE.match(line.strip())
        if match:
            return {"step": int(match.group(1)), "steps": int(match.group(2)), "rc": int(match.group(3)),
                    "what": match.group(4)}
    return None


# ---------------------------------------------------------------------------------------------------
# Diff mode


def unit_diff(plan: Mapping[str, Any], before_texts: Optional[Mapping[str, str]] = None) -> List[Dict[str, str]]:
    """Ansible diff entries, one per unit the plan changes.

    Texts are the canonical form (what `fleetctl cat` prints) so formatting does not show as a change.
    `before_texts` maps unit names to their current text (`fleetctl cat <unit>`); without it a unit whose
    hash differs shows a one-line placeholder naming its hash, and a unit with the desired hash shows the
    desired text. Headers carry the desired state, and a state change adds a `prepared` line, since the
    text alone would not show it.
    """
    before_texts = before_texts or {}
    line_continuation = plan.get("line_continuation", "keep")
    canonical: Dict[str, str] = {}

    def text_of(source: str) -> str:
        if source not in canonical:
            canonical[source] = canonical_unit(plan["texts"][source], source, line_continuation)
        return canonical[source]

    diffs = []
    for entry in plan["units"]:
        if not entry["actions"]:
            continue
        name, before, after = entry["name"], entry["before"], entry["after"]
        after_text = text_of(entry["source"]) if after else ""
        if before is None:
            before_text = ""
        elif name in before_texts:
            before_text = before_texts[name]
        elif after and "destroy" not in entry["actions"]:
            before_text = after_text
        else:
            before_text = f"# {name}: fleet unit with hash {before.get('hash')} (text not fetched)\n"
        before_state = (before.get("dstate") or "unknown") if before else "absent"
        after_state = after["dstate"] if after else "absent"
        diff = {
            "before_header": f"{name} ({before_state})",
            "after_header": f"{name} ({after_state})",
            "before": before_text,
            "after": after_text,
        }
        if before_state != after_state:
            diff["prepared"] = f"{name}: {before_state} -> {after_state} ({', '.join(entry['actions'])})\n"
        diffs.append(diff)
    return diffs


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


def listing_error(section: Optional[Mapping[str, Any]], what: str, host: str) -> Optional[str]:
    """Why a listing section failed, in words, or None when it worked."""
    if section is None:
        return f"{what} on {host} printed no result: the command was cut off (connection closed or shell error)"
    if section["rc"] == 0:
        return None
    output = " ".join((section.get("output") or "").split())
    output = (output[:600] + "...") if len(output) > 600 else (output or "(nothing)")
    if section["rc"] == COMMAND_NOT_FOUND:
        return (f"fleetctl was not found on {host} (looked in PATH and /opt/bin). Flatcar machines get it from the "
                f"cluster's cloud-config (fleet.service fetches it), legacy CoreOS ships it; output: {output}")
    return (f"{what} failed on {host} with exit code {section['rc']}: {output}. Is fleet running there and can it "
            "reach etcd?")
