# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bringing many machines to one state with a few batched EC2 calls.

amazon.aws's ec2_instance starts, stops and terminates one machine per API call and waits for each in turn:
fine for three machines, a hundred calls (and throttling) for a hundred. Here one DescribeInstances reads them
all, one Start/Stop/TerminateInstances call per batch acts on every machine that can move now, and one
DescribeInstances per poll waits for the lot. These functions decide; the cluster_instance_state module talks.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

TARGETS = ("running", "stopped", "terminated")
# EC2 documents up to 1000 ids per Start/Stop/TerminateInstances request and advises smaller batches: a request
# fails as a whole when one id is bad, so a small batch also limits what one bad id holds up.
BATCH = 100
API_CALL = {"running": "start_instances", "stopped": "stop_instances", "terminated": "terminate_instances"}

# For each target: the states a machine can be sent there from right now, the states it passes through on its
# own (wait, then look again), and the states it can never reach the target from.
_MOVABLE = {
    "running": {"stopped"},
    # A pending machine cannot be stopped yet (IncorrectInstanceState); it is waited for, then stopped.
    "stopped": {"running"},
    "terminated": {"pending", "running", "stopping", "stopped"},
}
_TRANSIENT = {
    "running": {"pending", "stopping"},
    "stopped": {"pending", "stopping"},
    "terminated": {"shutting-down"},
}
_UNREACHABLE = {
    "running": {"shutting-down", "terminated"},
    "stopped": {"shutting-down", "terminated"},
    "terminated": set(),
}


# The transient state that is already on its way to each target: waiting on it is no change of ours.
_HEADING = {"running": "pending", "stopped": "stopping", "terminated": "shutting-down"}


def needs_action(plan: Mapping[str, List[str]], states: Mapping[str, str], target: str) -> List[str]:
    """Machines this run has to send to `target`: those movable now and those passing through a state that
    leads elsewhere (a pending machine to be stopped, a stopping one to be started)."""
    return sorted(plan["act"] + [i for i in plan["wait"] if states.get(i) != _HEADING[validate_target(target)]])


def validate_target(state: Any) -> str:
    if state not in TARGETS:
        raise ValidationError(f"state must be one of {', '.join(TARGETS)}, got {state!r}")
    return str(state)


def state_plan(rows: Iterable[Mapping[str, Any]], target: str) -> Dict[str, List[str]]:
    """Sort machines (rows with id and state) into act now, wait for, done and unreachable, for `target`.

    A state EC2 may add later is treated as transient: waiting on it is safe, acting on it is not.
    """
    target = validate_target(target)
    plan: Dict[str, List[str]] = {"act": [], "wait": [], "done": [], "unreachable": []}
    for row in rows:
        ident, state = str(row.get("id", "")), str(row.get("state", ""))
        if not ident:
            raise ValidationError(f"every machine needs an id, got {dict(row)!r}")
        if state == target:
            plan["done"].append(ident)
        elif state in _MOVABLE[target]:
            plan["act"].append(ident)
        elif state in _UNREACHABLE[target]:
            plan["unreachable"].append(ident)
        else:
            plan["wait"].append(ident)
    return plan


def batches(ids: List[str], size: int = BATCH) -> Iterator[List[str]]:
    if size < 1:
        raise ValidationError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def poll_delays(timeout: float, first: float = 0.5, longest: float = 15.0) -> Iterator[float]:
    """Seconds to sleep between polls, doubling up to `longest`, summing to no more than `timeout`.

    Machines take from under a second (the sandbox; a machine that was pending anyway) to minutes (start on AWS):
    frequent polls at first catch fast changes, longer ones later keep a long wait from costing hundreds of
    DescribeInstances calls. Starting at 0.5 s rather than 2 s costs a minute-long wait two more calls.
    """
    spent, delay = 0.0, first
    while spent < timeout:
        step = min(delay, timeout - spent)
        yield step
        spent += step
        delay = min(delay * 2, longest)


def unreachable_message(ids: List[str], target: str) -> str:
    return (f"Cannot bring {', '.join(ids)} to {target}: terminated (or terminating) machines cannot be started or "
            "stopped again")


def describe_states(rows: Iterable[Mapping[str, Any]]) -> Dict[str, str]:
    return {str(r.get("id")): str(r.get("state")) for r in rows}


def launch_wait_done(rows: Iterable[Mapping[str, Any]], count: int) -> bool:
    """Every one of `count` machines is listed and running (and none more: AWS may list new ones late)."""
    rows = list(rows)
    return len(rows) == count and all(r.get("state") == "running" for r in rows)


def launch_progress(cluster_name: str, rows: Iterable[Mapping[str, Any]], count: int, elapsed: float) -> str:
    """One progress line of a wait for a launch: how many of N run, the others by state, seconds so far."""
    states: Dict[str, int] = {}
    for row in rows:
        states[str(row.get("state"))] = states.get(str(row.get("state")), 0) + 1
    running = states.pop("running", 0)
    others = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    listed = sum(states.values()) + running
    unlisted = f", {count - listed} not listed yet" if listed < count else ""
    return (f"cluster {cluster_name}: {running} of {count} machines running"
            f"{' (' + others + ')' if others else ''}{unlisted} after {int(elapsed)} s")
