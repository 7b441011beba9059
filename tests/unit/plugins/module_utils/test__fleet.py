# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet unit files, names, fleetctl output, plans and the deploy script.

The parser and hash cases reproduce fleet's unit/unit_test.go and go-systemd's unit tests; the script is
run by real shells against a stand-in fleetctl that records its calls and keeps what was submitted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _fleet as f
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

SLEEP = "[Service]\nExecStart=/bin/sleep 100\n"
SLEEP_HASH = "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"  # fleet unit/unit_test.go TestUnitHash
WEB = "[Unit]\nDescription=Web %i\n\n[Service]\nExecStart=/usr/bin/docker run --rm --name web-%i nginx\n"
WEB2 = WEB.replace("nginx", "nginx:1.25")
DB = "[Service]\nExecStart=/usr/bin/db\n\n[X-Fleet]\nMachineMetadata=role=db\n"
MACHINE = "113f16a7e1d24ff6b8c0a7f1e2f3a4b5"


def sha1(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def row(unit, content, dstate="launched", state="same", target=None):
    """A list-unit-files row as parse_list_unit_files returns it; the current state follows dstate by default."""
    if state == "same":
        state = "inactive" if dstate == "inactive" else dstate
    return {"unit": unit, "hash": f.unit_hash(content), "dstate": dstate, "state": state,
            "target": target, "target_ip": None, "global": False}


def web_rows(*numbers, content=WEB, dstate="launched", template=True):
    rows = [row("web@.service", content, "inactive")] if template else []
    return rows + [row(f"web@{n}.service", content, dstate) for n in numbers]


def actions(plan):
    return {key: plan[key] for key in ("destroy", "submit", "replace", "unload", "stop", "load", "start")}


NOTHING = {"destroy": [], "submit": [], "replace": [], "unload": [], "stop": [], "load": [], "start": []}


def expect(**changes):
    result = dict(NOTHING)
    result.update(changes)
    return result


# ---------------------------------------------------------------------------------------------------
# Hash and serialisation


def test_known_hash_vector():
    assert f.unit_hash(SLEEP) == SLEEP_HASH
    assert f.unit_hash(SLEEP)[:7] == "1c6fb6f"  # Hash.Short()
    assert f.serialize_unit(f.parse_unit(SLEEP)) == SLEEP


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
    assert f.unit_hash(text) == SLEEP_HASH


def test_multi_section_serialisation_and_hash():
    text = "[Unit]\nDescription=Foo\n[Service]\nExecStart=/a\n[Unit]\nAfter=b.service\n[X-Fleet]\nGlobal=true\n"
    serialized = "[Unit]\nDescription=Foo\nAfter=b.service\n\n[Service]\nExecStart=/a\n\n[X-Fleet]\nGlobal=true\n"
    assert f.canonical_unit(text) == serialized
    assert f.unit_hash(text) == sha1(serialized)


@pytest.mark.parametrize("a,b", [
    ("[Service]\nExecStart=/a\nExecStop=/b\n", "[Service]\nExecStop=/b\nExecStart=/a\n"),  # option order
    ("[Unit]\nA=1\n[Service]\nB=2\n", "[Service]\nB=2\n[Unit]\nA=1\n"),  # section order
    (SLEEP, SLEEP.replace("Service", "service")),
    (SLEEP, SLEEP.replace("100", "101")),
    (SLEEP, SLEEP.replace("sleep 100", "sleep  100")),  # inside a value, blanks count
])
def test_real_changes_change_the_hash(a, b):
    assert f.unit_hash(a) != f.unit_hash(b)


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
    assert f.serialize_unit(options) == expected


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
    assert f.unit_contents(f.parse_unit(text, line_continuation=line_continuation)) == expected


def test_fleet_serialize_deserialize_round_trip():
    options = f.parse_unit("\n[Unit]\nDescription = Foo\n")
    assert f.parse_unit(f.serialize_unit(options)) == options


@pytest.mark.parametrize("line_continuation", f.LINE_CONTINUATIONS)
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
    assert f.parse_unit(text, line_continuation=line_continuation) == expected


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
    assert f.parse_unit(text, line_continuation="keep") == [("Unit", "Description", keep)]
    assert f.parse_unit(text, line_continuation="join") == [("Unit", "Description", join)]


def test_continuation_versions_hash_differently():
    text = "[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n"
    assert f.unit_hash(text) == sha1("[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n")
    assert f.unit_hash(text, line_continuation="join") == sha1("[Service]\nExecStart=/bin/sh -c    'sleep 100'\n")


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
    ("[Service]\nA=" + "x" * (f.LINE_MAX - 2) + "\n", 2, "longer than 2047 bytes"),
    ("[Service]\nA=" + "é" * 1023 + "\n", 2, "longer than 2047 bytes"),  # bytes, not characters
])
def test_parse_unit_errors_name_unit_and_line(text, line, message):
    with pytest.raises(ValidationError, match=message) as raised:
        f.parse_unit(text, name="web.service")
    assert str(raised.value).startswith(f"Unit web.service: line {line}: ")
    assert raised.value.details == {"unit": "web.service", "line": line}


def test_line_just_below_the_limit_is_fine():
    value = "x" * (f.LINE_MAX - 3)
    assert f.parse_unit("[Service]\nA=" + value + "\n") == [("Service", "A", value)]


@pytest.mark.parametrize("bad", [None, b"[Service]\nA=1\n", 42])
def test_parse_unit_needs_text(bad):
    with pytest.raises(ValidationError, match="must be text"):
        f.parse_unit(bad)


def test_unknown_line_continuation_is_refused():
    with pytest.raises(ValidationError, match="line_continuation must be one of keep, join"):
        f.unit_hash(SLEEP, line_continuation="systemd")


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
    assert f.parse_multivalue_line(value) == expected


def test_unit_contents_splits_x_fleet_values_only():
    options = f.parse_unit('[Service]\nEnvironment="A=1" "B=2"\n[X-Fleet]\nMachineMetadata="region=us-east-1" "disk=ssd"\n')
    assert f.unit_contents(options) == {
        "Service": {"Environment": ['"A=1" "B=2"']},
        "X-Fleet": {"MachineMetadata": ["region=us-east-1", "disk=ssd"]},
    }


@pytest.mark.parametrize("text,expected", [
    ("[Service]\nA=1\n", "[Service]\nA=1\n"),
    ("[Service]\nA=1", "[Service]\nA=1\n"),
    ("", "\n"),
])
def test_normalize_content(text, expected):
    assert f.normalize_content(text) == expected


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
    assert f.unit_name_info(name) == {
        "full_name": name, "name": base, "prefix": prefix, "template": template, "instance": instance,
        "is_instance": is_instance, "is_template": is_template,
    }


@pytest.mark.parametrize("name", ["foo", "bar@baz", None])
def test_unit_name_info_without_a_dot(name):
    assert f.unit_name_info(name) is None


@pytest.mark.parametrize("name,ok", [
    # fleet unit/unit_test.go TestRecognizedUnitTypes
    ("foo.service", True), ("foo.socket", True), ("foo.path", True), ("foo.timer", True), ("foo.mount", True),
    ("foo.automount", True), ("foo.device", True), ("foo.swap", False), ("foo.target", False),
    ("foo.snapshot", False), ("foo.network", False), ("foo.netdev", False), ("foo.link", False), ("foo.unknown", False),
])
def test_recognized_unit_type(name, ok):
    assert f.recognized_unit_type(name) is ok


@pytest.mark.parametrize("name", [
    "web.service", "web@.service", "web@1.service", "a:b_c-d.e.socket", "var-lib-docker.mount", "x.timer",
    "web@a@b.service", "w" * 248 + ".service",
])
def test_validate_unit_name_accepts(name):
    assert f.validate_unit_name(name)["full_name"] == name


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
        f.validate_unit_name(name)


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
    assert f.template_instances(template, count=count, instances=instances) == expected


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
        f.template_instances(template, count=count, instances=instances)


# ---------------------------------------------------------------------------------------------------
# fleetctl output


# As fleetctl prints them: a tabwriter padding with tabs, so short cells are followed by several tabs.
LIST_UNIT_FILES = (
    f"db.service\t\t{f.unit_hash(DB)}\tlaunched\tlaunched\t{MACHINE}/172.17.8.101\n"
    f"web@.service\t\t{f.unit_hash(WEB)}\tinactive\tinactive\t-\n"
    f"web@1.service\t\t{f.unit_hash(WEB)}\tlaunched\tlaunched\t{MACHINE}\n"
    f"logger.service\t\t{SLEEP_HASH}\tlaunched\t-\tglobal\n"
    f"queued.service\t\t{SLEEP_HASH}\tloaded\tinactive\t-\n"
)


def test_parse_list_unit_files():
    assert f.parse_list_unit_files(LIST_UNIT_FILES) == [
        {"unit": "db.service", "hash": f.unit_hash(DB), "dstate": "launched", "state": "launched",
         "target": MACHINE, "target_ip": "172.17.8.101", "global": False},
        {"unit": "web@.service", "hash": f.unit_hash(WEB), "dstate": "inactive", "state": "inactive",
         "target": None, "target_ip": None, "global": False},
        {"unit": "web@1.service", "hash": f.unit_hash(WEB), "dstate": "launched", "state": "launched",
         "target": MACHINE, "target_ip": None, "global": False},
        {"unit": "logger.service", "hash": SLEEP_HASH, "dstate": "launched", "state": None,
         "target": None, "target_ip": None, "global": True},
        {"unit": "queued.service", "hash": SLEEP_HASH, "dstate": "loaded", "state": "inactive",
         "target": None, "target_ip": None, "global": False},
    ]


@pytest.mark.parametrize("stdout", [
    "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n" + LIST_UNIT_FILES,  # with the legend
    "\n\n" + LIST_UNIT_FILES.replace("\n", "  \r\n") + "\n   \n",  # blank lines, trailing blanks, CRLF
    LIST_UNIT_FILES.encode("utf-8"),
])
def test_parse_list_unit_files_is_robust(stdout):
    assert f.parse_list_unit_files(stdout) == f.parse_list_unit_files(LIST_UNIT_FILES)


@pytest.mark.parametrize("stdout", ["", None, "\n \n", "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n"])
def test_parse_list_unit_files_of_an_empty_cluster(stdout):
    assert f.parse_list_unit_files(stdout) == []


def test_short_hashes_without_full():
    rows = f.parse_list_unit_files("hello.service\t1c6fb6f\tlaunched\tlaunched\t113f16a7.../172.17.8.101\n")
    assert rows[0]["hash"] == "1c6fb6f" and rows[0]["target"] == "113f16a7..." and rows[0]["target_ip"] == "172.17.8.101"


@pytest.mark.parametrize("stdout,message", [
    ("Error retrieving list of units from repository: dial unix /var/run/fleet.sock: no such file\n",
     "line 1: expected 5 tab-separated fields \\(unit, hash, dstate, state, target\\), got 1"),
    (f"web.service\t{SLEEP_HASH}\tlaunched\tlaunched\n", "got 4"),
    (f"web.service {SLEEP_HASH} launched launched -\n", "got 1"),  # spaces are not fleetctl's separator
    (f"web.service\t{SLEEP_HASH}\tlaunched\tlaunched\t-\nweb\t{SLEEP_HASH}\tlaunched\tlaunched\t-\n",
     "line 2: unit 'web' is not valid"),
    ("web.service\tnot-a-hash\tlaunched\tlaunched\t-\n", "hash 'not-a-hash' is not valid"),
    (f"web.service\t{SLEEP_HASH}\trunning\tlaunched\t-\n", "dstate 'running' is not valid"),
    (f"web.service\t{SLEEP_HASH}\tlaunched\tlaunched\tsome machine\n", "target 'some machine' is not valid"),
    ("UNIT\tHASH\tDSTATE\tSTATE\tTARGET\nUNIT\tHASH\tDSTATE\tSTATE\tTARGET\n", "line 2: unit 'UNIT' is not valid"),
    (42, "must be text"),
])
def test_parse_list_unit_files_refuses_garbage(stdout, message):
    with pytest.raises(ClusterError, match=message):
        f.parse_list_unit_files(stdout)


def test_parse_list_units():
    stdout = (
        "UNIT\tMACHINE\tACTIVE\tSUB\n"
        f"db.service\t\t{MACHINE}/172.17.8.101\tactive\trunning\n"
        f"logger.service\t\t{MACHINE}/172.17.8.101\tactivating\tauto-restart\n"
        "web@1.service\t\t9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f\tfailed\tfailed\n"
        "web@2.service\t\t-\t-\t-\n"
    )
    assert f.parse_list_units(stdout) == [
        {"unit": "db.service", "machine": MACHINE, "ip": "172.17.8.101", "active": "active", "sub": "running"},
        {"unit": "logger.service", "machine": MACHINE, "ip": "172.17.8.101", "active": "activating", "sub": "auto-restart"},
        {"unit": "web@1.service", "machine": "9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f", "ip": None, "active": "failed", "sub": "failed"},
        {"unit": "web@2.service", "machine": None, "ip": None, "active": None, "sub": None},
    ]


@pytest.mark.parametrize("stdout,message", [
    ("db.service\tactive\trunning\n", "expected 4 tab-separated fields"),
    (f"db.service\t{MACHINE}\tactive now\trunning\n", "active 'active now' is not valid"),
])
def test_parse_list_units_refuses_garbage(stdout, message):
    with pytest.raises(ClusterError, match=message):
        f.parse_list_units(stdout)


def test_parse_list_machines():
    stdout = (
        f"{MACHINE}\t172.17.8.101\tregion=us-east-1,role=web\n"
        "9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f\t-\t-\n"
        "4d2a1b3c...\t10.0.0.7\tdisk=ssd\n"
    )
    assert f.parse_list_machines(stdout) == [
        {"machine": MACHINE, "ip": "172.17.8.101", "metadata": {"region": "us-east-1", "role": "web"}},
        {"machine": "9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f", "ip": None, "metadata": {}},
        {"machine": "4d2a1b3c...", "ip": "10.0.0.7", "metadata": {"disk": "ssd"}},
    ]


@pytest.mark.parametrize("stdout,message", [
    ("MACHINE\tIP\n", "expected 3 tab-separated fields"),
    ("not/a/machine\t10.0.0.1\t-\n", "machine 'not/a/machine' is not valid"),
])
def test_parse_list_machines_refuses_garbage(stdout, message):
    with pytest.raises(ClusterError, match=message):
        f.parse_list_machines(stdout)


# ---------------------------------------------------------------------------------------------------
# Validating services


@pytest.mark.parametrize("services,message", [
    ("web.service", "services must be a list of dicts"),
    ({"name": "web.service"}, "services must be a list of dicts"),
    (["web.service"], r"services\[0\] must be a dict"),
    ([{"content": SLEEP}], r"services\[0\]: name must be a unit name"),
    ([{"name": "web.service", "content": SLEEP, "instance": ["a"]}], r"services\[0\]: unknown option\(s\) instance"),
    ([{"name": "web.target", "content": SLEEP}], r"services\[0\] \(web.target\): Unit name 'web.target': fleet schedules"),
    ([{"name": "web.service", "content": SLEEP, "state": "started"}],
     r"services\[0\] \(web.service\): state must be one of launched, loaded, inactive, absent, got 'started'"),
    ([{"name": "web.service", "content": SLEEP, "count": 2}], "count and instances apply to template units"),
    ([{"name": "web@1.service", "content": SLEEP, "instances": ["a"]}], "count and instances apply to template units"),
    ([{"name": "web@.service", "content": SLEEP, "count": -1}], r"services\[0\] \(web@.service\): web@.service: count must be 0 or more"),
    ([{"name": "web@.service", "content": SLEEP, "count": 2, "instances": ["a"]}], "give count or instances, not both"),
    ([{"name": "web@.service", "state": "absent", "count": 2}], "state=absent removes the template"),
    ([{"name": "web@.service", "content": SLEEP}], "fleet cannot start a template itself"),
    ([{"name": "web@.service", "content": SLEEP, "state": "loaded"}], "fleet cannot load a template itself"),
    ([{"name": "web.service"}], "content \\(the unit file text\\) is required unless state=absent"),
    ([{"name": "web.service", "content": "# nothing\n"}], "the unit file has no options"),
    ([{"name": "web.service", "content": "[Service]\nbroken\n"}], "Unit web.service: line 2: expected Name=Value"),
    ([{"name": "web.service", "content": ["[Service]"]}], "content must be the unit file as text"),
    ([{"name": "web.service", "content": SLEEP}, {"name": "db.service", "content": SLEEP},
      {"name": "web.service", "state": "absent"}], r"services\[2\] \(web.service\): already listed as services\[0\]"),
    ([{"name": "web@.service", "content": WEB, "count": 3}, {"name": "web@2.service", "content": WEB}],
     r"services\[1\] \(web@2.service\): its template web@.service is listed with count/instances"),
    ([{"name": "web@9.service", "content": WEB}, {"name": "web@.service", "content": WEB, "instances": ["a"]}],
     r"services\[0\] \(web@9.service\): its template web@.service is listed with count/instances"),
    ([{"name": "web@.service", "state": "absent"}, {"name": "web@9.service", "state": "absent"}],
     "is listed with state=absent"),
])
def test_validate_services_refuses(services, message):
    with pytest.raises(ValidationError, match=message):
        f.validate_services(services)


def test_validation_comes_before_looking_at_the_cluster():
    with pytest.raises(ValidationError, match="state must be one of"):
        f.plan_units([{"name": "web.service", "content": SLEEP, "state": "running"}], current="not rows")
    with pytest.raises(ValidationError, match="current must be the rows"):
        f.plan_units([{"name": "web.service", "content": SLEEP}], current="not rows")


def test_validate_services_normalises():
    entries = f.validate_services([
        {"name": "web@.service", "content": "[Service]\nExecStart=/w", "count": "2"},
        {"name": "db.service", "content": DB, "state": None},
        {"name": "old.service", "state": "absent"},
        {"name": "tmpl@.service", "content": SLEEP, "state": "inactive"},
        {"name": "other@x.service", "content": SLEEP},  # an instance of its own, its template not managed here
    ])
    assert [(e["name"], e["state"], e["instances"]) for e in entries] == [
        ("web@.service", "launched", ["web@1.service", "web@2.service"]),
        ("db.service", "launched", None),
        ("old.service", "absent", None),
        ("tmpl@.service", "inactive", None),
        ("other@x.service", "launched", None),
    ]
    assert entries[0]["content"] == "[Service]\nExecStart=/w\n"
    assert entries[2]["content"] is None
    assert f.validate_services(None) == []


# ---------------------------------------------------------------------------------------------------
# Planning


def test_fresh_cluster():
    plan = f.plan_units([
        {"name": "web@.service", "content": WEB, "count": 3},
        {"name": "db.service", "content": DB, "state": "loaded"},
        {"name": "cron.timer", "content": "[Timer]\nOnCalendar=daily\n", "state": "inactive"},
    ], [])
    assert actions(plan) == expect(
        submit=["web@.service", "cron.timer", "db.service", "web@1.service", "web@2.service", "web@3.service"],
        load=["db.service"], start=["web@1.service", "web@2.service", "web@3.service"],
    )
    assert plan["write"] == ["cron.timer", "db.service", "web@.service"]
    assert plan["changed"] is True
    web1 = next(u for u in plan["units"] if u["name"] == "web@1.service")
    assert web1 == {"name": "web@1.service", "source": "web@.service", "before": None,
                    "after": {"hash": f.unit_hash(WEB), "dstate": "launched"}, "actions": ["submit", "start"]}


def test_idempotent_plan_is_empty():
    services = [
        {"name": "web@.service", "content": WEB, "count": 2},
        {"name": "db.service", "content": DB, "state": "loaded"},
        {"name": "cron.timer", "content": "[Timer]\nOnCalendar=daily\n", "state": "inactive"},
        {"name": "gone.service", "state": "absent"},
    ]
    current = web_rows(1, 2) + [row("db.service", DB, "loaded"), row("cron.timer", "[Timer]\nOnCalendar=daily\n", "inactive")]
    plan = f.plan_units(services, current)
    assert actions(plan) == NOTHING
    assert plan["changed"] is False and plan["write"] == []
    assert all(unit["actions"] == [] for unit in plan["units"])
    assert f.render_script(plan) == ""
    assert f.unit_diff(plan) == []
    assert f.describe_plan(plan) == "all fleet units are as desired"


def test_the_listing_of_an_applied_plan_plans_nothing():
    # What parse_list_unit_files reads after a deploy is enough for the next plan to be empty.
    services = [{"name": "web@.service", "content": WEB, "count": 1}, {"name": "db.service", "content": DB}]
    current = f.parse_list_unit_files(LIST_UNIT_FILES)
    plan = f.plan_units(services, current)
    assert actions(plan) == NOTHING


def test_count_three_to_five_to_two():
    services = [{"name": "web@.service", "content": WEB, "count": 3}]
    plan = f.plan_units(services, [])
    assert actions(plan) == expect(submit=["web@.service", "web@1.service", "web@2.service", "web@3.service"],
                                   start=["web@1.service", "web@2.service", "web@3.service"])

    services[0]["count"] = 5
    plan = f.plan_units(services, web_rows(1, 2, 3))
    assert actions(plan) == expect(submit=["web@4.service", "web@5.service"], start=["web@4.service", "web@5.service"])
    # The template is in the registry already; its file is still written for fleetctl to fall back on.
    assert plan["write"] == ["web@.service"]

    services[0]["count"] = 2
    plan = f.plan_units(services, web_rows(1, 2, 3, 4, 5))
    assert actions(plan) == expect(destroy=["web@3.service", "web@4.service", "web@5.service"])
    assert plan["write"] == []

    services[0]["count"] = 0
    plan = f.plan_units(services, web_rows(1, 2))
    assert actions(plan) == expect(destroy=["web@1.service", "web@2.service"])


def test_surplus_includes_every_instance_outside_the_desired_set():
    current = web_rows(1, 2, 10, "blue") + [row("web@x.socket", SLEEP), row("webx@1.service", SLEEP)]
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "instances": ["blue", 1, "green"]}], current)
    # Other templates' instances (webx@, web@.socket) are not this template's.
    assert actions(plan) == expect(destroy=["web@2.service", "web@10.service"], submit=["web@green.service"],
                                   start=["web@green.service"])


def test_a_changed_unit_only_replaces_that_unit():
    services = [{"name": "db.service", "content": DB.replace("/usr/bin/db", "/usr/bin/db --fast")},
                {"name": "web@.service", "content": WEB, "count": 2}]
    plan = f.plan_units(services, [row("db.service", DB)] + web_rows(1, 2))
    assert actions(plan) == expect(destroy=["db.service"], submit=["db.service"], replace=["db.service"],
                                   start=["db.service"])
    assert plan["write"] == ["db.service"]
    db = next(u for u in plan["units"] if u["name"] == "db.service")
    assert db["actions"] == ["destroy", "submit", "start"]
    assert f.describe_plan(plan) == "destroy db.service; submit db.service (replaced); start db.service"


def test_a_changed_template_replaces_it_and_its_instances():
    plan = f.plan_units([{"name": "web@.service", "content": WEB2, "count": 2}], web_rows(1, 2, 3))
    assert actions(plan) == expect(
        destroy=["web@.service", "web@1.service", "web@2.service", "web@3.service"],
        submit=["web@.service", "web@1.service", "web@2.service"],
        replace=["web@.service", "web@1.service", "web@2.service"],
        start=["web@1.service", "web@2.service"],
    )
    assert all(u["after"] is None or u["after"]["hash"] == f.unit_hash(WEB2) for u in plan["units"])


def test_an_instance_with_a_stale_hash_is_replaced_alone():
    current = web_rows(1, 2) + [row("web@3.service", WEB2)]
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "count": 3}], current)
    assert actions(plan) == expect(destroy=["web@3.service"], submit=["web@3.service"], replace=["web@3.service"],
                                   start=["web@3.service"])
    assert plan["write"] == ["web@.service"]


def test_reformatting_a_unit_changes_nothing():
    reformatted = "# managed by ansible\n[Service]\n\n  ExecStart = /bin/sleep 100  \n"
    plan = f.plan_units([{"name": "sleep.service", "content": reformatted}], [row("sleep.service", SLEEP)])
    assert actions(plan) == NOTHING


def test_short_hashes_compare_by_prefix():
    current = [dict(row("sleep.service", SLEEP), hash=SLEEP_HASH[:7])]
    assert actions(f.plan_units([{"name": "sleep.service", "content": SLEEP}], current)) == NOTHING
    current = [dict(row("sleep.service", SLEEP), hash="0000000")]
    assert f.plan_units([{"name": "sleep.service", "content": SLEEP}], current)["replace"] == ["sleep.service"]


@pytest.mark.parametrize("services,current,expected", [
    ([{"name": "db.service", "state": "absent"}], [row("db.service", DB), row("other.service", SLEEP)],
     expect(destroy=["db.service"])),
    ([{"name": "db.service", "state": "absent"}], [], NOTHING),
    # An absent template takes every instance along, whatever their hash.
    ([{"name": "web@.service", "state": "absent"}], web_rows(1, 2) + [row("web@x.service", SLEEP)],
     expect(destroy=["web@.service", "web@1.service", "web@2.service", "web@x.service"])),
    ([{"name": "web@.service", "state": "absent"}], web_rows(1, template=False),
     expect(destroy=["web@1.service"])),
    # One instance can be removed on its own when its template is not managed here.
    ([{"name": "web@2.service", "state": "absent"}], web_rows(1, 2), expect(destroy=["web@2.service"])),
])
def test_absent(services, current, expected):
    assert actions(f.plan_units(services, current)) == expected


def test_units_nobody_names_are_left_alone():
    current = [row("other.service", SLEEP), row("foo@1.service", SLEEP), row("foo@.service", SLEEP, "inactive")]
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "count": 0}], current)
    assert actions(plan) == expect(submit=["web@.service"])


def test_a_template_alone_is_only_submitted_and_keeps_its_instances():
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "state": "inactive"}], web_rows(1, 2, template=False))
    assert actions(plan) == expect(submit=["web@.service"])


def test_an_instance_may_be_listed_with_its_own_content():
    services = [{"name": "web@.service", "content": WEB, "state": "inactive"},
                {"name": "web@special.service", "content": SLEEP, "state": "loaded"}]
    plan = f.plan_units(services, [])
    assert actions(plan) == expect(submit=["web@.service", "web@special.service"], load=["web@special.service"])
    assert plan["write"] == ["web@.service", "web@special.service"]


@pytest.mark.parametrize("dstate,state,wanted,verb", [
    ("inactive", "inactive", "launched", "start"),
    ("loaded", "loaded", "launched", "start"),
    ("inactive", "inactive", "loaded", "load"),
    ("launched", "launched", "loaded", "stop"),
    # fleetctl stop refuses a unit that is currently inactive and skips one already loaded; load sets it.
    ("launched", "inactive", "loaded", "load"),
    ("launched", "loaded", "loaded", "load"),
    ("launched", None, "loaded", "load"),  # a global unit has no current state
    ("launched", "launched", "inactive", "unload"),
    ("loaded", "loaded", "inactive", "unload"),
    (None, None, "inactive", "unload"),
    (None, None, "launched", "start"),
    ("launched", "inactive", "launched", None),  # desired already; fleet is still scheduling it
    ("loaded", "launched", "loaded", None),
    ("inactive", "inactive", "inactive", None),
])
def test_state_changes(dstate, state, wanted, verb):
    current = [row("db.service", DB, dstate, state=state)]
    plan = f.plan_units([{"name": "db.service", "content": DB, "state": wanted}], current)
    assert actions(plan) == (expect(**{verb: ["db.service"]}) if verb else NOTHING)


def test_plan_sorts_instances_naturally():
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "count": 11}], web_rows(1, 2, 3, 4, 5, 6, 7, 8))
    assert plan["submit"] == ["web@9.service", "web@10.service", "web@11.service"]


@pytest.mark.parametrize("current,message", [
    ("db.service", "current must be the rows"),
    ([{"hash": SLEEP_HASH}], r"current\[0\] is not a list-unit-files row"),
])
def test_plan_refuses_bad_rows(current, message):
    with pytest.raises(ValidationError, match=message):
        f.plan_units([], current)


def test_plan_with_join_continuations():
    text = "[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n"
    joined = {"unit": "s.service", "hash": sha1("[Service]\nExecStart=/bin/sh -c    'sleep 100'\n"),
              "dstate": "launched", "state": "launched"}
    services = [{"name": "s.service", "content": text}]
    assert actions(f.plan_units(services, [joined], line_continuation="join")) == NOTHING
    assert f.plan_units(services, [joined])["replace"] == ["s.service"]


# ---------------------------------------------------------------------------------------------------
# Commands and the deploy script


@pytest.mark.parametrize("func,expected", [
    (f.list_unit_files_command, "fleetctl list-unit-files --full --no-legend --fields=unit,hash,dstate,state,target"),
    (f.list_units_command, "fleetctl list-units --full --no-legend --fields=unit,machine,active,sub"),
    (f.list_machines_command, "fleetctl list-machines --full --no-legend --fields=machine,ip,metadata"),
])
def test_listing_commands(func, expected):
    assert func() == expected


def test_listing_command_with_flags_and_env():
    command = f.list_unit_files_command(
        fleetctl="/opt/bin/fleetctl",
        flags={"endpoint": "http://10.0.0.5:2379", "driver": "etcd", "strict_host_key_checking": False, "tunnel": None},
        env={"FLEETCTL_ETCD_KEY_PREFIX": "/_coreos.com/fleet/", "FLEETCTL_TUNNEL": None},
    )
    assert command == (
        "FLEETCTL_ETCD_KEY_PREFIX=/_coreos.com/fleet/ /opt/bin/fleetctl --driver=etcd --endpoint=http://10.0.0.5:2379 "
        "--strict-host-key-checking=false list-unit-files --full --no-legend --fields=unit,hash,dstate,state,target"
    )


@pytest.mark.parametrize("kwargs,message", [
    ({"fleetctl": ""}, "fleetctl must be the fleetctl command"),
    ({"flags": {"--endpoint": "x"}}, "is not a flag name"),
    ({"flags": {"endpoint": ["x"]}}, "must be a string, number or boolean"),
    ({"flags": "--endpoint=x"}, "must be a dict"),
    ({"env": {"ETCDCTL_ENDPOINT": "x"}}, "only FLEETCTL_\\* variables"),
    ({"env": ["FLEETCTL_ENDPOINT=x"]}, "must be a dict"),
])
def test_command_options_are_checked(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        f.list_units_command(**kwargs)


def test_fleetctl_command_quotes_its_words():
    command = f.fleetctl_command("cat", ["web@1.service"], flags={"endpoint": "unix:///var/run/fleet sock"},
                                 env={"FLEETCTL_ENDPOINT": "it's"})
    assert command == "FLEETCTL_ENDPOINT='it'\"'\"'s' fleetctl '--endpoint=unix:///var/run/fleet sock' cat web@1.service"
    with pytest.raises(ValidationError, match="not a fleetctl subcommand"):
        f.fleetctl_command("cat; rm -rf /")


STUB_FLEETCTL = r"""#!/bin/sh
# A stand-in fleetctl: records each call, keeps submitted units in $STUB_DIR/registry like fleet would.
printf '%s\n' "$*" >> "$STUB_DIR/calls"
printf '%s\n' "${FLEETCTL_ENDPOINT:-unset}" >> "$STUB_DIR/endpoints"
while [ $# -gt 0 ]; do
    case $1 in --*) shift ;; *) break ;; esac
done
verb=$1
shift
if [ "$verb" = "${STUB_FAIL:-none}" ]; then
    echo "Error: $verb failed on purpose" >&2
    exit 3
fi
[ "$verb" = submit ] || exit 0
mkdir -p "$STUB_DIR/registry"
for path in "$@"; do
    name=${path##*/}
    if [ -f "$path" ]; then
        cp "$path" "$STUB_DIR/registry/$name"
        continue
    fi
    # An instance without a file: its template from the registry, else next to it (fleetctl getUnitFile).
    template=$(printf '%s' "$name" | sed 's/@.*\./@./')
    if [ -f "$STUB_DIR/registry/$template" ]; then
        cp "$STUB_DIR/registry/$template" "$STUB_DIR/registry/$name"
    elif [ -f "${path%/*}/$template" ]; then
        cp "${path%/*}/$template" "$STUB_DIR/registry/$name"
    else
        echo "unable to find template Unit($template)" >&2
        exit 4
    fi
done
"""

SHELLS = [shell for shell in ("sh", "dash", "bash") if shutil.which(shell)]


@pytest.fixture
def stub(tmp_path):
    """Run a script with the stand-in fleetctl first on PATH; returns a runner and the stub's directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fleetctl = bin_dir / "fleetctl"
    fleetctl.write_text(STUB_FLEETCTL)
    fleetctl.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def run(script, shell="sh", fail=None, endpoint=None):
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path), "TMPDIR": str(scratch),
               "HOME": str(tmp_path)}
        if fail:
            env["STUB_FAIL"] = fail
        if endpoint:
            env["FLEETCTL_ENDPOINT"] = endpoint
        return subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)

    run.dir = tmp_path
    run.scratch = scratch
    return run


def calls(stub):
    path = stub.dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


def registry(stub):
    folder = stub.dir / "registry"
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.exists() else {}


TRICKY = (
    "[Unit]\nDescription=It's $HOME `uname` \"quoted\" \\\n  and continued\n\n"
    "[Service]\nExecStart=/bin/sh -c 'echo $1; exit 0' -- x\nEnvironment=A=${B:-c}\n"
    "ExecStop=/bin/echo EOF\n\t\tIndented=with tabs\nTrailing=backslash at end \\\n"
)


@pytest.mark.parametrize("shell", SHELLS)
def test_script_deploys_through_fleetctl(stub, shell):
    services = [
        {"name": "web@.service", "content": WEB, "count": 2},
        {"name": "tricky.service", "content": TRICKY, "state": "loaded"},
        {"name": "gone.service", "state": "absent"},
    ]
    plan = f.plan_units(services, [row("gone.service", SLEEP)])
    result = stub(f.render_script(plan, flags={"request-timeout": 9}), shell=shell, endpoint="unix:///run/fleet.sock")
    assert result.returncode == 0, result.stderr
    made = calls(stub)
    assert len(made) == 4
    assert made[0] == "--request-timeout=9 destroy gone.service"
    assert made[2:] == ["--request-timeout=9 load --no-block tricky.service",
                        "--request-timeout=9 start --no-block web@1.service web@2.service"]
    submitted = made[1].split()
    assert submitted[:2] == ["--request-timeout=9", "submit"]
    # Paths in the script's temporary directory, templates first.
    assert {path.rsplit("/", 1)[0] for path in submitted[2:]} == {path.rsplit("/", 1)[0] for path in submitted[2:3]}
    assert submitted[2].startswith(f"{stub.scratch}/fleet_units.")
    assert [path.rsplit("/", 1)[1] for path in submitted[2:]] == [
        "web@.service", "tricky.service", "web@1.service", "web@2.service"]
    # The files reached fleetctl byte for byte, instances through their template.
    assert registry(stub) == {"web@.service": WEB, "web@1.service": WEB, "web@2.service": WEB, "tricky.service": TRICKY}
    assert f.unit_hash(registry(stub)["tricky.service"]) == f.unit_hash(TRICKY)
    assert set(open(stub.dir / "endpoints").read().split()) == {"unix:///run/fleet.sock"}
    assert os.listdir(stub.scratch) == []  # the temporary directory is gone


def test_script_passes_fleetctl_env_and_blocks_when_asked(stub):
    plan = f.plan_units([{"name": "db.service", "content": DB, "state": "loaded"}],
                        [row("db.service", DB, "launched")])
    script = f.render_script(plan, fleetctl="fleetctl", env={"FLEETCTL_ENDPOINT": "http://10.0.0.5:2379"},
                             block_attempts=20)
    assert "mktemp" not in script  # nothing to write, no temporary directory
    result = stub(script)
    assert result.returncode == 0, result.stderr
    assert calls(stub) == ["stop --block-attempts=20 db.service"]
    assert (stub.dir / "endpoints").read_text() == "http://10.0.0.5:2379\n"


def test_script_batches_units(stub):
    plan = f.plan_units([{"name": "web@.service", "content": WEB, "count": 5}], web_rows(template=True))
    result = stub(f.render_script(plan, batch_size=2))
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in calls(stub)] == ["submit", "submit", "submit", "start", "start", "start"]
    assert [len(c.split()) - 1 for c in calls(stub) if c.startswith("submit")] == [2, 2, 1]
    assert calls(stub)[3:] == ["start --no-block web@1.service web@2.service",
                               "start --no-block web@3.service web@4.service", "start --no-block web@5.service"]
    assert sorted(registry(stub)) == [f"web@{n}.service" for n in range(1, 6)]


def test_script_stops_at_the_first_failure_and_says_which_step(stub):
    plan = f.plan_units([{"name": "a.service", "content": SLEEP}, {"name": "b.service", "content": DB, "state": "loaded"}],
                        [])
    result = stub(f.render_script(plan), fail="load")
    assert result.returncode == 3
    assert "Error: load failed on purpose" in result.stderr
    failure = f.script_failure(result.stderr)
    assert failure == {"step": 5, "steps": 6, "rc": 3, "what": "fleetctl load b.service"}
    assert [c.split()[0] for c in calls(stub)] == ["submit", "load"]  # start never ran
    assert os.listdir(stub.scratch) == []  # cleaned up after the failure too


def test_script_reports_a_missing_fleetctl(stub):
    plan = f.plan_units([{"name": "a.service", "content": SLEEP}], [])
    result = stub(f.render_script(plan, fleetctl="/nonexistent/fleetctl"))
    assert result.returncode == 127
    assert f.script_failure(result.stderr) == {"step": 3, "steps": 4, "rc": 127, "what": "fleetctl submit a.service"}


def test_heredoc_delimiter_avoids_the_content(stub):
    content = "[Service]\nExecStart=/bin/echo FLEET_UNIT_EOF\nExecStop=/bin/echo FLEET_UNIT_EOF_1\n"
    plan = f.plan_units([{"name": "a.service", "content": content}], [])
    script = f.render_script(plan)
    assert "<<'FLEET_UNIT_EOF_2'" in script
    result = stub(script)
    assert result.returncode == 0, result.stderr
    assert registry(stub) == {"a.service": content}


def test_content_without_final_newline_is_written_as_hashed(stub):
    content = "[Service]\nExecStart=/bin/sleep 100 \\"
    plan = f.plan_units([{"name": "a.service", "content": content}], [])
    result = stub(f.render_script(plan))
    assert result.returncode == 0, result.stderr
    written = registry(stub)["a.service"]
    assert written == content + "\n"
    assert plan["units"][0]["after"]["hash"] == f.unit_hash(written)


def test_render_script_checks_its_arguments():
    plan = f.plan_units([{"name": "a.service", "content": SLEEP}], [])
    with pytest.raises(ValidationError, match="batch_size must be"):
        f.render_script(plan, batch_size=0)
    with pytest.raises(ValidationError, match="block_attempts must be"):
        f.render_script(plan, block_attempts=-1)
    with pytest.raises(ValidationError, match="needs a plan"):
        f.render_script({"submit": ["a.service"]})


@pytest.mark.parametrize("stderr", [None, "", "fleetctl: error\n", b"nothing", 42])
def test_script_failure_without_a_failure(stderr):
    assert f.script_failure(stderr) is None


# ---------------------------------------------------------------------------------------------------
# Diff mode


def test_unit_diff():
    services = [
        {"name": "new.service", "content": "# mine\n[Service]\nExecStart=/new\n"},
        {"name": "db.service", "content": DB.replace("/usr/bin/db", "/usr/bin/db2")},
        {"name": "sleep.service", "content": SLEEP, "state": "loaded"},
        {"name": "gone.service", "state": "absent"},
        {"name": "same.service", "content": SLEEP},
    ]
    current = [row("db.service", DB), row("sleep.service", SLEEP, "launched"), row("gone.service", SLEEP),
               row("same.service", SLEEP)]
    plan = f.plan_units(services, current)
    diffs = {d["after_header"].split()[0]: d for d in f.unit_diff(plan, before_texts={"db.service": DB})}
    assert sorted(diffs) == ["db.service", "gone.service", "new.service", "sleep.service"]
    assert diffs["new.service"] == {
        "before_header": "new.service (absent)", "after_header": "new.service (launched)",
        "before": "", "after": "[Service]\nExecStart=/new\n",  # canonical: the comment is not stored
        "prepared": "new.service: absent -> launched (submit, start)\n",
    }
    assert diffs["db.service"] == {
        "before_header": "db.service (launched)", "after_header": "db.service (launched)",
        "before": DB, "after": f.canonical_unit(DB.replace("/usr/bin/db", "/usr/bin/db2")),
    }
    # State only: the text is the same on both sides, the prepared line tells the change.
    assert diffs["sleep.service"]["before"] == diffs["sleep.service"]["after"] == SLEEP
    assert diffs["sleep.service"]["prepared"] == "sleep.service: launched -> loaded (stop)\n"
    assert diffs["gone.service"]["after"] == "" and diffs["gone.service"]["after_header"] == "gone.service (absent)"
    assert diffs["gone.service"]["before"] == f"# gone.service: fleet unit with hash {SLEEP_HASH} (text not fetched)\n"


# ---------------------------------------------------------------------------------------------------
# Several commands in one round trip

NONCE = "0123abcd"


def _run_sections(parts):
    script = f.sections_script(parts, NONCE)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    return f.parse_sections(done.stdout, NONCE)


def test_sections_run_every_command_and_keep_each_output_and_exit_code():
    sections = _run_sections([
        ("one", "printf 'a\\tb\\nc\\n'"),
        ("no-newline", "printf 'x'"),
        ("fails", "echo oops >&2; exit 3"),
        ("missing", "no-such-command-here --list"),
        ("empty", "true"),
    ])
    assert sections["one"] == {"rc": 0, "output": "a\tb\nc\n"}
    assert sections["no-newline"] == {"rc": 0, "output": "x"}
    assert sections["fails"] == {"rc": 3, "output": "oops\n"}
    assert sections["missing"]["rc"] == f.COMMAND_NOT_FOUND
    assert sections["empty"] == {"rc": 0, "output": ""}


def test_sections_find_fleetctl_in_opt_bin():
    assert "/opt/bin" in f.sections_script([("x", "true")], NONCE).splitlines()[0]


def test_parse_sections_ignores_text_outside_sections_and_other_nonces():
    out = f"banner\n@@fleet-section ffffffff evil 0\nreal\n\n@@fleet-section {NONCE} k 0\n"
    assert f.parse_sections(out, NONCE) == {"k": {"rc": 0, "output": "banner\n@@fleet-section ffffffff evil 0\nreal\n"}}
    assert f.parse_sections("cut off before the marker\n", NONCE) == {}
    assert f.parse_sections(None, NONCE) == {}


@pytest.mark.parametrize("parts, nonce, match", [
    ([("bad key", "true")], NONCE, "section key"),
    ([("k", "true")], "xyz", "nonce"),
])
def test_sections_script_refuses_bad_keys_and_nonces(parts, nonce, match):
    with pytest.raises(ValidationError, match=match):
        f.sections_script(parts, nonce)


def test_cat_parts_and_texts():
    parts = f.cat_parts(["web@.service", "db.service"])
    assert [key for key, _cmd in parts] == ["cat:web@.service", "cat:db.service"]
    assert parts[1][1] == "fleetctl cat db.service"
    texts = f.cat_texts({"cat:db.service": {"rc": 0, "output": "[Service]\nExecStart=/bin/true"},
                         "cat:web@.service": {"rc": 1, "output": "Unit web@.service not found"},
                         "list": {"rc": 0, "output": "x"}})
    assert texts == {"db.service": "[Service]\nExecStart=/bin/true\n"}


@pytest.mark.parametrize("section, expected", [
    ({"rc": 0, "output": ""}, None),
    (None, "printed no result"),
    ({"rc": 127, "output": "sh: 1: fleetctl: not found"}, "fleetctl was not found on node-1"),
    ({"rc": 1, "output": "Error retrieving list of units from repository:\n connection refused"},
     "failed on node-1 with exit code 1: Error retrieving list of units from repository: connection refused"),
])
def test_listing_error(section, expected):
    message = f.listing_error(section, "fleetctl list-unit-files", "node-1")
    assert message is None if expected is None else expected in message
