# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetctl command lines, the parsers of its listings and several commands in one round trip (run by sh)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import unit_hash
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import (
    COMMAND_NOT_FOUND,
    _env_assignments,
    _global_words,
    cat_parts,
    cat_texts,
    etcd_driver_needed,
    fleetctl_command,
    list_machines_command,
    list_unit_files_command,
    list_units_command,
    listing_error,
    parse_list_machines,
    parse_list_unit_files,
    parse_list_units,
    parse_sections,
    sections_script,
)

from fleet_cases import DB, LIST_UNIT_FILES, MACHINE, SLEEP_HASH, WEB


# ---------------------------------------------------------------------------------------------------
# fleetctl output


def test_parse_list_unit_files():
    assert parse_list_unit_files(LIST_UNIT_FILES) == [
        {"unit": "db.service", "hash": unit_hash(DB), "dstate": "launched", "state": "launched",
         "target": MACHINE, "target_ip": "172.17.8.101", "global": False},
        {"unit": "web@.service", "hash": unit_hash(WEB), "dstate": "inactive", "state": "inactive",
         "target": None, "target_ip": None, "global": False},
        {"unit": "web@1.service", "hash": unit_hash(WEB), "dstate": "launched", "state": "launched",
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
    assert parse_list_unit_files(stdout) == parse_list_unit_files(LIST_UNIT_FILES)


@pytest.mark.parametrize("stdout", ["", None, "\n \n", "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n"])
def test_parse_list_unit_files_of_an_empty_cluster(stdout):
    assert parse_list_unit_files(stdout) == []


def test_short_hashes_without_full():
    rows = parse_list_unit_files("hello.service\t1c6fb6f\tlaunched\tlaunched\t113f16a7.../172.17.8.101\n")
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
        parse_list_unit_files(stdout)


def test_parse_list_units():
    stdout = (
        "UNIT\tMACHINE\tACTIVE\tSUB\n"
        f"db.service\t\t{MACHINE}/172.17.8.101\tactive\trunning\n"
        f"logger.service\t\t{MACHINE}/172.17.8.101\tactivating\tauto-restart\n"
        "web@1.service\t\t9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f\tfailed\tfailed\n"
        "web@2.service\t\t-\t-\t-\n"
    )
    assert parse_list_units(stdout) == [
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
        parse_list_units(stdout)


def test_parse_list_machines():
    stdout = (
        f"{MACHINE}\t172.17.8.101\tregion=us-east-1,role=web\n"
        "9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f\t-\t-\n"
        "4d2a1b3c...\t10.0.0.7\tdisk=ssd\n"
    )
    assert parse_list_machines(stdout) == [
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
        parse_list_machines(stdout)


# ---------------------------------------------------------------------------------------------------
# Command lines


@pytest.mark.parametrize("func,expected", [
    (list_unit_files_command, "fleetctl list-unit-files --full --no-legend --fields=unit,hash,dstate,state,target"),
    (list_units_command, "fleetctl list-units --full --no-legend --fields=unit,machine,active,sub"),
    (list_machines_command, "fleetctl list-machines --full --no-legend --fields=machine,ip,metadata"),
])
def test_listing_commands(func, expected):
    assert func() == expected


def test_listing_command_with_flags_and_env():
    command = list_unit_files_command(
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
        list_units_command(**kwargs)


def test_fleetctl_command_quotes_its_words():
    command = fleetctl_command("cat", ["web@1.service"], flags={"endpoint": "unix:///var/run/fleet sock"},
                               env={"FLEETCTL_ENDPOINT": "it's"})
    assert command == "FLEETCTL_ENDPOINT='it'\"'\"'s' fleetctl '--endpoint=unix:///var/run/fleet sock' cat web@1.service"
    with pytest.raises(ValidationError, match="not a fleetctl subcommand"):
        fleetctl_command("cat; rm -rf /")


# ---------------------------------------------------------------------------------------------------
# The driver: fleetctl 1.0 speaks the fleet API to an http(s) endpoint unless --driver=etcd is given

ETCD = "http://10.0.0.5:2379"


@pytest.mark.parametrize("flags, env, needed", [
    # The documented examples, which failed with "googleapi: got HTTP response code 404" before.
    ({"endpoint": ETCD, "request-timeout": 10}, None, True),
    (None, {"FLEETCTL_ENDPOINT": ETCD}, True),
    ({"endpoint": "https://10.0.0.5:2379,https://10.0.0.6:2379"}, None, True),
    ({"endpoint": "HTTP://10.0.0.5:2379"}, None, True),
    # A driver given anywhere is the user's choice (API for a fleet API served over TCP).
    ({"endpoint": ETCD, "driver": "API"}, None, False),
    ({"endpoint": ETCD}, {"FLEETCTL_DRIVER": "API"}, False),
    (None, {"FLEETCTL_ENDPOINT": ETCD, "FLEETCTL_DRIVER": "etcd"}, False),
    ({"driver": "API"}, {"FLEETCTL_ENDPOINT": ETCD}, False),
    # The endpoint flag wins over FLEETCTL_ENDPOINT, as in fleetctl.
    ({"endpoint": "unix:///var/run/fleet.sock"}, {"FLEETCTL_ENDPOINT": ETCD}, False),
    ({"endpoint": ETCD}, {"FLEETCTL_ENDPOINT": "unix:///var/run/fleet.sock"}, True),
    # The local fleetd's socket, and unset values.
    (None, None, False),
    ({"endpoint": "unix:///var/run/fleet.sock"}, None, False),
    ({"endpoint": ETCD, "driver": None}, {"FLEETCTL_DRIVER": None}, True),
])
def test_etcd_driver_needed(flags, env, needed):
    assert etcd_driver_needed(flags, env) is needed
    command = list_units_command(flags=flags, env=env)
    assert (command.count("--driver=etcd") == 1) is needed
    if needed:
        assert command.endswith(" --driver=etcd list-units --full --no-legend --fields=unit,machine,active,sub")


def test_documented_examples_get_the_etcd_driver():
    assert fleetctl_command("cat", ["db.service"], flags={"endpoint": ETCD, "request-timeout": 10}) == (
        f"fleetctl --endpoint={ETCD} --request-timeout=10 --driver=etcd cat db.service"
    )
    assert fleetctl_command("cat", ["db.service"], env={"FLEETCTL_ENDPOINT": ETCD}) == (
        f"FLEETCTL_ENDPOINT={ETCD} fleetctl --driver=etcd cat db.service"
    )


@pytest.fixture
def fleetctl_stub(tmp_path):
    """A fleetctl that prints its flags and FLEETCTL_DRIVER, one per line."""
    stub = tmp_path / "fleetctl"
    stub.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" "env=${FLEETCTL_DRIVER:-unset}"\n')
    stub.chmod(0o755)
    return str(stub)


def _run_exported(fleetctl, flags, env):
    """As script.py runs fleetctl: the env exported first, the flags rendered without knowing it."""
    lines = [f"{word}; export {word.split('=', 1)[0]}" for word in _env_assignments(env)]
    lines.append(" ".join(_global_words(fleetctl, flags)) + " list-units")
    done = subprocess.run(["sh", "-c", "\n".join(lines)], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("flags, env, driver_flag, driver_env", [
    ({"endpoint": ETCD}, None, "--driver=etcd", "unset"),
    ({"endpoint": ETCD}, {"FLEETCTL_DRIVER": "API"}, "--driver=API", "API"),
    (None, {"FLEETCTL_ENDPOINT": ETCD}, None, "etcd"),
    ({"driver": "API"}, {"FLEETCTL_ENDPOINT": ETCD}, "--driver=API", "etcd"),  # the flag wins in fleetctl
    ({"endpoint": "unix:///var/run/fleet.sock"}, None, None, "unset"),
])
def test_driver_where_the_env_is_exported_by_the_script(fleetctl_stub, flags, env, driver_flag, driver_env):
    words = _run_exported(fleetctl_stub, flags, env)
    assert [w for w in words if w.startswith("--driver")] == ([driver_flag] if driver_flag else [])
    assert words[-1] == f"env={driver_env}"


def test_sandbox_fleetctl_double_accepts_the_etcd_driver(tmp_path):
    double = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "..",
                          "roles", "sandbox", "files", "node-image", "opt", "bin", "fleetctl.py")
    wrapper = tmp_path / "fleetctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {os.path.abspath(double)} "$@"\n')
    wrapper.chmod(0o755)
    # Port 9 (discard) refuses at once: the double got as far as talking to etcd, so the flags were accepted.
    command = list_machines_command(str(wrapper), flags={"endpoint": "http://127.0.0.1:9", "request-timeout": 1})
    assert "--driver=etcd" in command
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "etcd cluster is unavailable" in done.stderr


# ---------------------------------------------------------------------------------------------------
# Several commands in one round trip

NONCE = "0123abcd"


def _run_sections(parts):
    script = sections_script(parts, NONCE)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    return parse_sections(done.stdout, NONCE)


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
    assert sections["missing"]["rc"] == COMMAND_NOT_FOUND
    assert sections["empty"] == {"rc": 0, "output": ""}


def test_sections_find_fleetctl_in_opt_bin():
    assert "/opt/bin" in sections_script([("x", "true")], NONCE).splitlines()[0]


def test_parse_sections_ignores_text_outside_sections_and_other_nonces():
    out = f"banner\n@@fleet-section ffffffff evil 0\nreal\n\n@@fleet-section {NONCE} k 0\n"
    assert parse_sections(out, NONCE) == {"k": {"rc": 0, "output": "banner\n@@fleet-section ffffffff evil 0\nreal\n"}}
    assert parse_sections("cut off before the marker\n", NONCE) == {}
    assert parse_sections(None, NONCE) == {}


@pytest.mark.parametrize("parts, nonce, match", [
    ([("bad key", "true")], NONCE, "section key"),
    ([("k", "true")], "xyz", "nonce"),
])
def test_sections_script_refuses_bad_keys_and_nonces(parts, nonce, match):
    with pytest.raises(ValidationError, match=match):
        sections_script(parts, nonce)


def test_cat_parts_and_texts():
    parts = cat_parts(["web@.service", "db.service"])
    assert [key for key, _cmd in parts] == ["cat:web@.service", "cat:db.service"]
    assert parts[1][1] == "fleetctl cat db.service"
    texts = cat_texts({"cat:db.service": {"rc": 0, "output": "[Service]\nExecStart=/bin/true"},
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
    message = listing_error(section, "fleetctl list-unit-files", "node-1")
    assert message is None if expected is None else expected in message


def test_listing_error_says_a_404_endpoint_is_no_fleet_api():
    # fleetctl 1.0 with the API driver pointed at etcd's client URL.
    output = "Error retrieving list of units from repository: googleapi: got HTTP response code 404 with body: 404 page not found\n"
    message = listing_error({"rc": 1, "output": output}, "fleetctl list-unit-files", "node-1")
    assert message.startswith("fleetctl list-unit-files failed on node-1 with exit code 1: Error retrieving list of "
                              "units from repository: googleapi: got HTTP response code 404 with body: 404 page not found.")
    assert "The endpoint answered HTTP 404: it is not a fleet API." in message
    assert "set fleetctl_flags driver: etcd (or FLEETCTL_DRIVER=etcd)" in message
    assert "unix:///var/run/fleet.sock" in message
    # Not the answer of a fleet that is still starting: the deploy role must not wait for it.
    assert "Is fleet running there" not in message and "fleetctl was not found" not in message


def test_listing_error_says_an_endpoint_is_no_etcd():
    output = ("Error retrieving list of active machines: client: response is invalid json. The endpoint is probably "
              "not valid etcd cluster endpoint.")
    message = listing_error({"rc": 1, "output": output}, "fleetctl list-machines", "node-1")
    assert "the endpoint must be etcd's client URL" in message and "driver: API" in message
    assert "Is fleet running there" not in message
