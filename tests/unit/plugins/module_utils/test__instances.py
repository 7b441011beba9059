from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _instances as i
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

MIXED = [{"id": f"i-{state}", "state": state}
         for state in ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")]


@pytest.mark.parametrize("target, expected", [
    ("running", {"act": ["i-stopped"], "wait": ["i-pending", "i-stopping"], "done": ["i-running"],
                 "unreachable": ["i-shutting-down", "i-terminated"]}),
    ("stopped", {"act": ["i-running"], "wait": ["i-pending", "i-stopping"], "done": ["i-stopped"],
                 "unreachable": ["i-shutting-down", "i-terminated"]}),
    ("terminated", {"act": ["i-pending", "i-running", "i-stopping", "i-stopped"], "wait": ["i-shutting-down"],
                    "done": ["i-terminated"], "unreachable": []}),
])
def test_state_plan_sorts_every_state(target, expected):
    assert i.state_plan(MIXED, target) == expected


def test_state_plan_waits_on_a_state_it_does_not_know():
    assert i.state_plan([{"id": "i-1", "state": "hibernating"}], "stopped")["wait"] == ["i-1"]


def test_state_plan_of_nothing_is_empty():
    assert i.state_plan([], "running") == {"act": [], "wait": [], "done": [], "unreachable": []}


@pytest.mark.parametrize("target", ["absent", "started", "", None])
def test_unknown_target_is_refused_with_the_choices(target):
    with pytest.raises(ValidationError, match="running, stopped, terminated"):
        i.state_plan(MIXED, target)


def test_a_machine_without_id_is_refused():
    with pytest.raises(ValidationError, match="needs an id"):
        i.state_plan([{"state": "running"}], "stopped")


def test_batches():
    ids = [f"i-{n}" for n in range(250)]
    chunks = list(i.batches(ids))
    assert [len(c) for c in chunks] == [100, 100, 50] and sum(chunks, []) == ids
    assert list(i.batches([])) == []
    with pytest.raises(ValidationError):
        list(i.batches(ids, 0))


def test_poll_delays_double_up_to_the_longest_and_fit_the_timeout():
    assert list(i.poll_delays(60)) == [0.5, 1, 2, 4, 8, 15, 15, 14.5]
    assert list(i.poll_delays(60, first=2)) == [2, 4, 8, 15, 15, 15, 1]
    assert sum(i.poll_delays(600)) == 600
    assert list(i.poll_delays(0)) == []


def test_unreachable_message_names_the_machines():
    assert i.unreachable_message(["i-1", "i-2"], "running").startswith("Cannot bring i-1, i-2 to running")


def test_describe_states():
    assert i.describe_states(MIXED[:2]) == {"i-pending": "pending", "i-running": "running"}


@pytest.mark.parametrize("target, expected", [
    # pending heads to running by itself; stopping must be started once stopped.
    ("running", ["i-stopped", "i-stopping"]),
    ("stopped", ["i-pending", "i-running"]),
    ("terminated", ["i-pending", "i-running", "i-stopped", "i-stopping"]),
])
def test_needs_action_leaves_out_machines_already_heading_there(target, expected):
    plan = i.state_plan(MIXED[:5] if target == "terminated" else MIXED[:4], target)
    assert i.needs_action(plan, i.describe_states(MIXED), target) == expected


def test_launch_progress_and_done():
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instances import launch_progress, launch_wait_done

    rows = [{"state": "running"}, {"state": "pending"}]
    assert launch_progress("p-1", rows, 3, 12.7) == "cluster p-1: 1 of 3 machines running (1 pending), 1 not listed yet after 12 s"
    assert launch_progress("p-1", rows + [{"state": "running"}], 3, 40) == "cluster p-1: 2 of 3 machines running (1 pending) after 40 s"
    assert not launch_wait_done(rows, 2) and launch_wait_done([{"state": "running"}] * 2, 2)
    assert not launch_wait_done([{"state": "running"}] * 3, 2)  # more than asked for is not done either
