# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet unit files and unit names, as fleetctl reads and fleet stores them.

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

Also for the other _fleet submodules: _natural / _unit_key (the order units are listed in: a template
before its instances, instances in natural order), _snippet (a value quoted, shortened, for a message) and
_check_continuation (a line_continuation argument checked).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._values import whole_number

Option = Tuple[str, str, str]

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


def template_instances(template: str, count: Any = None, instances: Any = None) -> List[str]:
    """The instance units of a template: foo@1..foo@<count>, or one per entry of `instances`, in that order.

    Exactly one of count (>= 0) and instances (a list of distinct strings or numbers) must be given.
    """
    if (count is None) == (instances is None):
        raise ValidationError(f"{template}: give either count or instances")
    if count is not None:
        number = whole_number(count, f"{template}: count")
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
