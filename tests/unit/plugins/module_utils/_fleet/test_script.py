# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy script, run by real shells against a stand-in fleetctl that records its calls and keeps what
was submitted."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import unit_hash
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.plan import plan_units
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.script import render_script, script_failure

from fleet_cases import DB, SLEEP, WEB, row, web_rows


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
    plan = plan_units(services, [row("gone.service", SLEEP)])
    result = stub(render_script(plan, flags={"request-timeout": 9}), shell=shell, endpoint="unix:///run/fleet.sock")
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
    assert unit_hash(registry(stub)["tricky.service"]) == unit_hash(TRICKY)
    assert set(open(stub.dir / "endpoints").read().split()) == {"unix:///run/fleet.sock"}
    assert os.listdir(stub.scratch) == []  # the temporary directory is gone


def test_script_passes_fleetctl_env_and_blocks_when_asked(stub):
    plan = plan_units([{"name": "db.service", "content": DB, "state": "loaded"}],
                      [row("db.service", DB, "launched")])
    script = render_script(plan, fleetctl="fleetctl", env={"FLEETCTL_ENDPOINT": "http://10.0.0.5:2379"},
                           block_attempts=20)
    assert "mktemp" not in script  # nothing to write, no temporary directory
    result = stub(script)
    assert result.returncode == 0, result.stderr
    assert calls(stub) == ["stop --block-attempts=20 db.service"]
    assert (stub.dir / "endpoints").read_text() == "http://10.0.0.5:2379\n"


def test_script_batches_units(stub):
    plan = plan_units([{"name": "web@.service", "content": WEB, "count": 5}], web_rows(template=True))
    result = stub(render_script(plan, batch_size=2))
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in calls(stub)] == ["submit", "submit", "submit", "start", "start", "start"]
    assert [len(c.split()) - 1 for c in calls(stub) if c.startswith("submit")] == [2, 2, 1]
    assert calls(stub)[3:] == ["start --no-block web@1.service web@2.service",
                               "start --no-block web@3.service web@4.service", "start --no-block web@5.service"]
    assert sorted(registry(stub)) == [f"web@{n}.service" for n in range(1, 6)]


def test_script_stops_at_the_first_failure_and_says_which_step(stub):
    plan = plan_units([{"name": "a.service", "content": SLEEP}, {"name": "b.service", "content": DB, "state": "loaded"}],
                      [])
    result = stub(render_script(plan), fail="load")
    assert result.returncode == 3
    assert "Error: load failed on purpose" in result.stderr
    failure = script_failure(result.stderr)
    assert failure == {"step": 5, "steps": 6, "rc": 3, "what": "fleetctl load b.service"}
    assert [c.split()[0] for c in calls(stub)] == ["submit", "load"]  # start never ran
    assert os.listdir(stub.scratch) == []  # cleaned up after the failure too


def test_script_reports_a_missing_fleetctl(stub):
    plan = plan_units([{"name": "a.service", "content": SLEEP}], [])
    result = stub(render_script(plan, fleetctl="/nonexistent/fleetctl"))
    assert result.returncode == 127
    assert script_failure(result.stderr) == {"step": 3, "steps": 4, "rc": 127, "what": "fleetctl submit a.service"}


def test_heredoc_delimiter_avoids_the_content(stub):
    content = "[Service]\nExecStart=/bin/echo FLEET_UNIT_EOF\nExecStop=/bin/echo FLEET_UNIT_EOF_1\n"
    plan = plan_units([{"name": "a.service", "content": content}], [])
    script = render_script(plan)
    assert "<<'FLEET_UNIT_EOF_2'" in script
    result = stub(script)
    assert result.returncode == 0, result.stderr
    assert registry(stub) == {"a.service": content}


def test_content_without_final_newline_is_written_as_hashed(stub):
    content = "[Service]\nExecStart=/bin/sleep 100 \\"
    plan = plan_units([{"name": "a.service", "content": content}], [])
    result = stub(render_script(plan))
    assert result.returncode == 0, result.stderr
    written = registry(stub)["a.service"]
    assert written == content + "\n"
    assert plan["units"][0]["after"]["hash"] == unit_hash(written)


def test_render_script_checks_its_arguments():
    plan = plan_units([{"name": "a.service", "content": SLEEP}], [])
    with pytest.raises(ValidationError, match="batch_size must be"):
        render_script(plan, batch_size=0)
    with pytest.raises(ValidationError, match="block_attempts must be"):
        render_script(plan, block_attempts=-1)
    with pytest.raises(ValidationError, match="needs a plan"):
        render_script({"submit": ["a.service"]})


@pytest.mark.parametrize("stderr", [None, "", "fleetctl: error\n", b"nothing", 42])
def test_script_failure_without_a_failure(stderr):
    assert script_failure(stderr) is None
