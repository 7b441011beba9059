# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one POSIX sh script that applies a plan of plan.py with fleetctl on a cluster machine.

- render_script(plan, fleetctl="fleetctl", flags=None, env=None, batch_size=50, block_attempts=None) -> str:
  one script that applies the plan ("" when there is nothing to do). fleetctl, flags and env as in
  fleetctl.py's fleetctl_command.
- script_failure(stderr) -> dict | None: which step of a rendered script failed, from its stderr.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import _env_assignments, _global_words

# Markers of the rendered script, read back by script_failure.
SCRIPT_TAG = "fleet_units"
HEREDOC_DELIMITER = "FLEET_UNIT_EOF"
_FAILURE_RE = re.compile(rf"^{SCRIPT_TAG}: step (\d+)/(\d+) failed with exit code (\d+): (.*)$")


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
