# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet unit files and unit names.

The parser and hash cases reproduce fleet's unit/unit_test.go and go-systemd's unit tests.
"""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import (
    LINE_CONTINUATIONS,
    LINE_MAX,
    canonical_unit,
    normalize_content,
    parse_multivalue_line,
    parse_unit,
    recognized_unit_type,
    serialize_unit,
    template_instances,
    unit_contents,
    unit_hash,
    unit_name_info,
    validate_unit_name,
)

from fleet_cases import SLEEP, SLEEP_HASH, sha1


# ---------------------------------------------------------------------------------------------------
# Hash and serialisation


def test_known_hash_vector():
    assert unit_hash(SLEEP) == SLEEP_HASH
    assert unit_hash(SLEEP)[:7] == "1c6fb6f"  # Hash.Short()
    assert serialize_unit(parse_unit(SLEEP)) == SLEEP


@pytest.mark.parametrize("text", [
    SLEEP,
    "[Service]\nExecStart=/bin/sleep 100",  # no final newline
    "# a comment\n; another\n\n[Service]\n\n   ExecStart   =   /bin/sleep 100   \n\n",
    "[Service]\r\nExecStart=/bin/sleep 100\r\n",  # CRLF: the value keeps "\r" until trimmed
    "ignored before any section\n[Service]\nExecStart=/bin/sleep 100\n",
    "[Unit]\n\n[Service]\nExecStart=/bin/sleep 100\n",  # a section without options leaves no trace
    "[Service]\n# ExecStart=/bin/false \\\n  still the comment\nExecStart=/bin/sleep 100\n",
])
def test_formatting_does_not_change_the_hash(text):
    assert unit_hash(text) == SLEEP_HASH


def test_multi_section_serialisation_and_hash():
    text = "[Unit]\nDescription=Foo\n[Service]\nExecStart=/a\n[Unit]\nAfter=b.service\n[X-Fleet]\nGlobal=true\n"
    serialized = "[Unit]\nDescription=Foo\nAfter=b.service\n\n[Service]\nExecStart=/a\n\n[X-Fleet]\nGlobal=true\n"
    assert canonical_unit(text) == serialized
    assert unit_hash(text) == sha1(serialized)


@pytest.mark.parametrize("a,b", [
    ("[Service]\nExecStart=/a\nExecStop=/b\n", "[Service]\nExecStop=/b\nExecStart=/a\n"),  # option order
    ("[Unit]\nA=1\n[Service]\nB=2\n", "[Service]\nB=2\n[Unit]\nA=1\n"),  # section order
    (SLEEP, SLEEP.replace("Service", "service")),
    (SLEEP, SLEEP.replace("100", "101")),
    (SLEEP, SLEEP.replace("sleep 100", "sleep  100")),  # inside a value, blanks count
])
def test_real_changes_change_the_hash(a, b):
    assert unit_hash(a) != unit_hash(b)


@pytest.mark.parametrize("options,expected", [
    # go-systemd unit/serialize_test.go
    ([], ""),
    ([("Unit", "Description", "Foo"), ("Unit", "BindsTo", "bar.service")], "[Unit]\nDescription=Foo\nBindsTo=bar.service\n"),
    ([("Unit", "Description", "Foo"), ("Unit", "Description", "Bar")], "[Unit]\nDescription=Foo\nDescription=Bar\n"),
    ([("Unit", "Description", "Foo"), ("Service", "ExecStart", "/usr/bin/sleep infinity"), ("Unit", "BindsTo", "bar.service")],
     "[Unit]\nDescription=Foo\nBindsTo=bar.service\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n"),
    ([("Unit", "Description", "Foo"), ("Service", "ExecStart", "/usr/bin/sleep infinity"), ("Unit", "BindsTo", "bar.service"),
      ("X-Foo", "Bar", "baz"), ("Service", "ExecStop", "/usr/bin/sleep 1"), ("Unit", "Documentation", "https://foo.com")],
     "[Unit]\nDescription=Foo\nBindsTo=bar.service\nDocumentation=https://foo.com\n\n"
     "[Service]\nExecStart=/usr/bin/sleep infinity\nExecStop=/usr/bin/sleep 1\n\n[X-Foo]\nBar=baz\n"),
    ([("©", "µ☃", "ÇôrèÕ$")], "[©]\nµ☃=ÇôrèÕ$\n"),
    ([("Service", "Environment", "")], "[Service]\nEnvironment=\n"),
])
def test_serialize_unit(options, expected):
    assert serialize_unit(options) == expected


# ---------------------------------------------------------------------------------------------------
# Parsing: fleet's and go-systemd's own test vectors


FLEET_DESERIALIZE = """
This=Ignored
[Unit]
;ignore this guy
Description = Foo

[Service]
ExecStart=echo "ping";
ExecStop=echo "pong"
# ignore me, too
ExecStop=echo post

[X-Fleet]
MachineMetadata=foo=bar
MachineMetadata=baz=qux
"""

FLEET_GARBAGE = """
>>>>>>>>>>>>>
[Service]
ExecStart=jim
# As long as a line has an equals sign, systemd is happy, so we should pass it through
<<<<<<<<<<<=bar
"""

FLEET_MULTILINES = """
[Service]
ExecStart=echo \\
  "pi\\
  ng"
ExecStop=\\
echo "po\\
ng"
# comments within continuation should not be ignored
ExecStopPre=echo\\
#pang
ExecStopPost=echo\\
#peng\\
pung
"""


@pytest.mark.parametrize("text,line_continuation,expected", [
    (FLEET_DESERIALIZE, "keep", {
        "Unit": {"Description": ["Foo"]},
        "Service": {"ExecStart": ['echo "ping";'], "ExecStop": ['echo "pong"', "echo post"]},
        "X-Fleet": {"MachineMetadata": ["foo=bar", "baz=qux"]},
    }),
    (FLEET_GARBAGE, "keep", {"Service": {"ExecStart": ["jim"], "<<<<<<<<<<<": ["bar"]}}),
    # fleet v1.0.0's TestDeserializeEscapedMultilines: the backslash-newlines stay in the value.
    (FLEET_MULTILINES, "keep", {"Service": {
        "ExecStart": ['echo \\\n  "pi\\\n  ng"'], "ExecStop": ['\\\necho "po\\\nng"'],
        "ExecStopPre": ["echo\\\n#pang"], "ExecStopPost": ["echo\\\n#peng\\\npung"],
    }}),
    # The same test in fleet v0.11 and earlier: each backslash-newline becomes a space.
    (FLEET_MULTILINES, "join", {"Service": {
        "ExecStart": ['echo    "pi   ng"'], "ExecStop": ['echo "po ng"'],
        "ExecStopPre": ["echo #pang"], "ExecStopPost": ["echo #peng pung"],
    }}),
    ("\n[Unit]\nDescription = Foo\n", "keep", {"Unit": {"Description": ["Foo"]}}),
    ("\n[Unit]\n\n[Service]\nExecStart=echo \"ping\";\nExecStop=echo \"pong\";\n", "keep",
     {"Service": {"ExecStart": ['echo "ping";'], "ExecStop": ['echo "pong";']}}),
])
def test_fleet_unit_test_vectors(text, line_continuation, expected):
    assert unit_contents(parse_unit(text, line_continuation=line_continuation)) == expected


def test_fleet_serialize_deserialize_round_trip():
    options = parse_unit("\n[Unit]\nDescription = Foo\n")
    assert parse_unit(serialize_unit(options)) == options


@pytest.mark.parametrize("line_continuation", LINE_CONTINUATIONS)
@pytest.mark.parametrize("text,expected", [
    # go-systemd unit/deserialize_test.go cases whose result both readings share
    ("[Unit]\nDescription=Foo\nDescription=Bar\nRequires=baz.service\nAfter=baz.service\n",
     [("Unit", "Description", "Foo"), ("Unit", "Description", "Bar"), ("Unit", "Requires", "baz.service"),
      ("Unit", "After", "baz.service")]),
    ("[Unit]\nDescription=Foo\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n\n[X-Third-Party]\nPants=on\n\n",
     [("Unit", "Description", "Foo"), ("Service", "ExecStart", "/usr/bin/sleep infinity"), ("X-Third-Party", "Pants", "on")]),
    ("[Unit]\n[Service]\n[X-Third-Party]\n", []),
    ('[Service]\nEnvironment= "FOO=BAR" "BAZ=QUX"\n', [("Service", "Environment", '"FOO=BAR" "BAZ=QUX"')]),
    ("; comment alpha\n# comment bravo\n[Unit]\n; comment charlie\n# comment delta\n#Description=Foo\nDescription=Bar\n"
     "; comment echo\n# comment foxtrot\n", [("Unit", "Description", "Bar")]),
    ("Description=Foo\n[Unit]\nDescription=Bar\n", [("Unit", "Description", "Bar")]),
    ("<<<<<<<<\n[Unit]\nDescription=Bar\n", [("Unit", "Description", "Bar")]),
    ("[Unit]\n<<<<<<<<=Bar\n", [("Unit", "<<<<<<<<", "Bar")]),
    ("[Unit]\nSome Thing = Bar\n", [("Unit", "Some Thing", "Bar")]),
    ("[Unit]\nDescription=Bar", [("Unit", "Description", "Bar")]),
    ("[©]\nµ☃=ÇôrèÕ$", [("©", "µ☃", "ÇôrèÕ$")]),
    ("[Unit]\n Description   =words here\n", [("Unit", "Description", "words here")]),
    ("[Unit]\nDescription= words here ", [("Unit", "Description", "words here")]),
    ('[Service]\nExecStart=/bin/bash -c "while true; do echo \\"ping\\"; sleep 1; done"\n',
     [("Service", "ExecStart", '/bin/bash -c "while true; do echo \\"ping\\"; sleep 1; done"')]),
    # More corners of the lexer
    ("[Service]\nEnvironment=A=1 B=2\n", [("Service", "Environment", "A=1 B=2")]),  # the first '=' splits
    ("[Service]\nEnvironment=\nX=1\n", [("Service", "Environment", ""), ("Service", "X", "1")]),
    ("[Service]\n=orphan\n", [("Service", "", "orphan")]),
    ("[Service]\nA=1 ; not a comment\n", [("Service", "A", "1 ; not a comment")]),
    ("[Service]\n\t  # indented comment\n  A=1\n", [("Service", "A", "1")]),
    ("[]\nA=1\n", [("", "A", "1")]),
    ("[Un\nit]\nA=1\n", [("Un\nit", "A", "1")]),  # ReadBytes(']') crosses the line break, as in go-systemd
    ("x [Service]\nA=1\n", [("Service", "A", "1")]),  # '[' before the first section opens one
    ("x # [Unit] \\\n[Fake]\n[Service]\nA=1\n", [("Service", "A", "1")]),  # a continued comment swallows [Fake]
    ("[Service]\nA= \x1c1\x1c \n", [("Service", "A", "\x1c1\x1c")]),  # Go's TrimSpace keeps 0x1c
    ("[Service]\nA=\u00a01\u00a0\n", [("Service", "A", "1")]),  # ... but trims a no-break space
    ("[Service]\r\nA=1\r\nB=2\r\n", [("Service", "A", "1"), ("Service", "B", "2")]),
    ("[Service]\nA=1 \\\r\nB=2\n", [("Service", "A", "1 \\"), ("Service", "B", "2")]),  # "\r" hides the backslash
])
def test_parse_unit_shared_cases(text, expected, line_continuation):
    assert parse_unit(text, line_continuation=line_continuation) == expected


@pytest.mark.parametrize("text,keep,join", [
    # go-systemd deserialize_test.go "line continuations respected" (the join result is its expectation)
    ("[Unit]\nDescription= Unnecessarily wrapped \\\n    words here\n",
     "Unnecessarily wrapped \\\n    words here", "Unnecessarily wrapped      words here"),
    ("[Unit]\nDescription=Bar\\\n# comment alpha\n", "Bar\\\n# comment alpha", "Bar # comment alpha"),
    ("[Unit]\nDescription=Bar\\\n# comment bravo \\\nBaz\n", "Bar\\\n# comment bravo \\\nBaz", "Bar # comment bravo  Baz"),
    ("[Unit]\nDescription=Bar \\", "Bar \\", "Bar"),  # continuation at the end of input
    ("[Unit]\nDescription= words here \\\n  ", "words here \\\n", "words here"),
    # A blank line ends a continued value; "keep" then keeps the line break.
    ("[Unit]\nDescription=Bar \\\n\n", "Bar \\\n", "Bar"),
    ("[Unit]\nDescription=a \\ b\n", "a \\ b", "a \\ b"),  # a backslash inside a line continues nothing
])
def test_parse_unit_line_continuations(text, keep, join):
    assert parse_unit(text, line_continuation="keep") == [("Unit", "Description", keep)]
    assert parse_unit(text, line_continuation="join") == [("Unit", "Description", join)]


def test_continuation_versions_hash_differently():
    text = "[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n"
    assert unit_hash(text) == sha1("[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n")
    assert unit_hash(text, line_continuation="join") == sha1("[Service]\nExecStart=/bin/sh -c    'sleep 100'\n")


@pytest.mark.parametrize("text,line,message", [
    # fleet unit_test.go TestBadUnitsFail and go-systemd TestDeserializeFail
    ("\n[Unit]\n\n[Service]\n<<<<<<<<<<<<<<<<\n", 5, "expected Name=Value, found no '='"),
    ("\n[Unit]\nnonsense upon stilts\n", 3, "'nonsense upon stilts'"),
    ("[Unit\nDescription=Foo\n", 1, "has no closing ']'"),
    ("[Unit] pants\nDescription=Foo\n", 1, "unexpected text after section header \\[Unit\\]: 'pants'"),
    ("[Unit]\nDescription\n", 2, "found no '='"),
    ("[Unit]\n<<<<<<\nDescription=Foo\n", 2, "found no '='"),
    # More
    ("[Unit]\nDescription=ok\nDescription", 3, "at the end of the file"),
    ("[Unit]\nA=1\r\nB\r\nC=3\n", 3, "found no '='"),
    ("[Service]\nA=1\n[X-Fleet\n", 3, "has no closing ']'"),
    ("[Service]\nA=1\n\n\n[X] [Y]\n", 5, "unexpected text after section header"),
    ("[Service]\nA=\x00\n", 2, "NUL character"),
    ("[Service]\nA=" + "x" * (LINE_MAX - 2) + "\n", 2, "longer than 2047 bytes"),
    ("[Service]\nA=" + "é" * 1023 + "\n", 2, "longer than 2047 bytes"),  # bytes, not characters
])
def test_parse_unit_errors_name_unit_and_line(text, line, message):
    with pytest.raises(ValidationError, match=message) as raised:
        parse_unit(text, name="web.service")
    assert str(raised.value).startswith(f"Unit web.service: line {line}: ")
    assert raised.value.details == {"unit": "web.service", "line": line}


def test_line_just_below_the_limit_is_fine():
    value = "x" * (LINE_MAX - 3)
    assert parse_unit("[Service]\nA=" + value + "\n") == [("Service", "A", value)]


@pytest.mark.parametrize("bad", [None, b"[Service]\nA=1\n", 42])
def test_parse_unit_needs_text(bad):
    with pytest.raises(ValidationError, match="must be text"):
        parse_unit(bad)


def test_unknown_line_continuation_is_refused():
    with pytest.raises(ValidationError, match="line_continuation must be one of keep, join"):
        unit_hash(SLEEP, line_continuation="systemd")


@pytest.mark.parametrize("value,expected", [
    # fleet unit/unit_test.go TestParseMultivalueLine
    ('"bar" "ping" "pong"', ["bar", "ping", "pong"]),
    ('"bar"', ["bar"]),
    ("", [""]),
    ('""', [""]),
    ('"bar', ['"bar']),
    ('bar"', ['bar"']),
    ('foo\\"bar', ['foo\\"bar']),
    ('"bar" "', ["bar", ""]),
    ('"foo\\"bar"', ["foo\\bar"]),
])
def test_parse_multivalue_line(value, expected):
    assert parse_multivalue_line(value) == expected


def test_unit_contents_splits_x_fleet_values_only():
    options = parse_unit('[Service]\nEnvironment="A=1" "B=2"\n[X-Fleet]\nMachineMetadata="region=us-east-1" "disk=ssd"\n')
    assert unit_contents(options) == {
        "Service": {"Environment": ['"A=1" "B=2"']},
        "X-Fleet": {"MachineMetadata": ["region=us-east-1", "disk=ssd"]},
    }


@pytest.mark.parametrize("text,expected", [
    ("[Service]\nA=1\n", "[Service]\nA=1\n"),
    ("[Service]\nA=1", "[Service]\nA=1\n"),
    ("", "\n"),
])
def test_normalize_content(text, expected):
    assert normalize_content(text) == expected


# ---------------------------------------------------------------------------------------------------
# Unit names


@pytest.mark.parametrize("name,base,prefix,template,instance,is_instance,is_template", [
    # fleet unit/unit_test.go TestNamedUnit
    ("foo.service", "foo", "foo", "", "", False, False),
    ("foo@.service", "foo@", "foo", "foo@.service", "", False, True),
    ("foo@bar.service", "foo@bar", "foo", "foo@.service", "bar", True, False),
    ("foo@bar@baz.service", "foo@bar@baz", "foo", "foo@.service", "bar@baz", True, False),
    ("foo.1@.service", "foo.1@", "foo.1", "foo.1@.service", "", False, True),
    ("foo.1@2.service", "foo.1@2", "foo.1", "foo.1@.service", "2", True, False),
    ("ssh@.socket", "ssh@", "ssh", "ssh@.socket", "", False, True),
    ("ssh@1.socket", "ssh@1", "ssh", "ssh@.socket", "1", True, False),
])
def test_unit_name_info(name, base, prefix, template, instance, is_instance, is_template):
    assert unit_name_info(name) == {
        "full_name": name, "name": base, "prefix": prefix, "template": template, "instance": instance,
        "is_instance": is_instance, "is_template": is_template,
    }


@pytest.mark.parametrize("name", ["foo", "bar@baz", None])
def test_unit_name_info_without_a_dot(name):
    assert unit_name_info(name) is None


@pytest.mark.parametrize("name,ok", [
    # fleet unit/unit_test.go TestRecognizedUnitTypes
    ("foo.service", True), ("foo.socket", True), ("foo.path", True), ("foo.timer", True), ("foo.mount", True),
    ("foo.automount", True), ("foo.device", True), ("foo.swap", False), ("foo.target", False),
    ("foo.snapshot", False), ("foo.network", False), ("foo.netdev", False), ("foo.link", False), ("foo.unknown", False),
])
def test_recognized_unit_type(name, ok):
    assert recognized_unit_type(name) is ok


@pytest.mark.parametrize("name", [
    "web.service", "web@.service", "web@1.service", "a:b_c-d.e.socket", "var-lib-docker.mount", "x.timer",
    "web@a@b.service", "w" * 248 + ".service",
])
def test_validate_unit_name_accepts(name):
    assert validate_unit_name(name)["full_name"] == name


@pytest.mark.parametrize("name,message", [
    ("", "non-empty string"),
    (None, "non-empty string"),
    (7, "non-empty string"),
    ("web", "needs a type suffix, e.g. web.service"),
    ("web.", "needs a type suffix"),
    (".service", "needs a name before .service"),
    ("web.target", "fleet schedules only .service, .socket.*not .target.*web.target.service"),
    ("web.Service", "not .Service"),
    ("my web.service", "contains ' '"),
    ("web/1.service", "contains '/'"),
    ("web\\x2d.service", "contains '\\\\\\\\'"),
    ("wéb.service", "contains 'é'"),
    ("@web.service", "cannot start with '@'"),
    ("w" * 249 + ".service", "longer than 256 characters"),
])
def test_validate_unit_name_refuses(name, message):
    with pytest.raises(ValidationError, match=message):
        validate_unit_name(name)


@pytest.mark.parametrize("template,count,instances,expected", [
    ("web@.service", 3, None, ["web@1.service", "web@2.service", "web@3.service"]),
    ("web@.service", "2", None, ["web@1.service", "web@2.service"]),
    ("web@.service", 0, None, []),
    ("ssh@.socket", 1, None, ["ssh@1.socket"]),
    ("web@.service", None, ["blue", "green", 7], ["web@blue.service", "web@green.service", "web@7.service"]),
    ("web@.service", None, [], []),
    ("web.1@.service", None, ["a:b"], ["web.1@a:b.service"]),
])
def test_template_instances(template, count, instances, expected):
    assert template_instances(template, count=count, instances=instances) == expected


@pytest.mark.parametrize("template,count,instances,message", [
    ("web@.service", None, None, "either count or instances"),
    ("web@.service", 2, ["a"], "either count or instances"),
    ("web@.service", -1, None, "count must be 0 or more, got -1"),
    ("web@.service", True, None, "count must be a whole number"),
    ("web@.service", "three", None, "count must be a whole number"),
    ("web@.service", None, "a,b", "instances must be a list"),
    ("web@.service", None, ["a", "a"], "instance 'a' is listed twice"),
    ("web@.service", None, ["1", 1], "instance 1 is listed twice"),
    ("web@.service", None, [""], "at least one"),
    ("web@.service", None, ["a b"], "letters, digits"),
    ("web@.service", None, [True], "strings or numbers"),
    ("web.service", 2, None, "not a template unit"),
    ("web@1.service", 2, None, "not a template unit"),
])
def test_template_instances_refuses(template, count, instances, message):
    with pytest.raises(ValidationError, match=message):
        template_instances(template, count=count, instances=instances)
