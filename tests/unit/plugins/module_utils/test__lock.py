# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster lock's record: written, read back, judged free, ours, held or expired."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _lock as lk

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.timezone.utc)


def value(run="0123456789abcdef", holder="ana@laptop:4242", minutes_ago=0):
    return lk.lock_value(run, holder, NOW - datetime.timedelta(minutes=minutes_ago))


def test_value_round_trips():
    v = value()
    assert v == "0123456789abcdef ana@laptop:4242 since 2026-11-30T12:00:00Z"
    assert lk.parse_lock(v) == {"run_id": "0123456789abcdef", "holder": "ana@laptop:4242", "since": NOW}
    assert lk.parse_lock("") is None and lk.parse_lock(None) is None
    # Something we did not write is held by an unknown run, never taken over by age.
    assert lk.parse_lock("hands off") == {"run_id": "", "holder": "hands off", "since": None}
    assert lk.lock_state("hands off", "ffff0000ffff0000", NOW, 60) == "held"


def test_holder_with_spaces_stays_one_word():
    assert lk.parse_lock(lk.lock_value("0123456789abcdef", "ana b@x", NOW))["holder"] == "ana_b@x"


@pytest.mark.parametrize("current, run, minutes, host, alive, expected", [
    (None, "aaaaaaaaaaaaaaaa", 0, "", None, "free"),
    ("0123456789abcdef", "0123456789abcdef", 0, "", None, "ours"),
    ("0123456789abcdef", "aaaaaaaaaaaaaaaa", 5, "", None, "held"),
    ("0123456789abcdef", "aaaaaaaaaaaaaaaa", 120, "", None, "expired"),
    # The holder ran on this host and its process is gone (Ctrl-C): taken over at once.
    ("0123456789abcdef", "aaaaaaaaaaaaaaaa", 1, "laptop", lambda pid: False, "expired"),
    ("0123456789abcdef", "aaaaaaaaaaaaaaaa", 1, "laptop", lambda pid: True, "held"),
    # Another host's process cannot be checked from here.
    ("0123456789abcdef", "aaaaaaaaaaaaaaaa", 1, "desktop", lambda pid: False, "held"),
])
def test_lock_state(current, run, minutes, host, alive, expected):
    v = value(run=current, minutes_ago=minutes) if current else None
    assert lk.lock_state(v, run, NOW, 3600, host=host, alive=alive) == expected


def test_group_tags_and_holder_process():
    assert lk.group_tags({"Tags": [{"Key": "a", "Value": "1"}]}) == {"a": "1"}
    assert lk.group_tags({"tags": {"a": "1"}}) == {"a": "1"} and lk.group_tags(None) == {}
    assert lk.holder_process("ana@laptop:4242") == ("laptop", 4242)
    assert lk.holder_process("ana@laptop") == ("laptop", None)


def test_held_message_names_the_other_run_and_the_ways_out():
    msg = lk.held_message("p-1", "coreos-ec2-p-1 (sg-1)", value(minutes_ago=2), NOW, 0)
    assert "run 0123456789abcdef by ana@laptop:4242" in msg and "since 2026-11-30T11:58:00Z, 120 s ago" in msg
    assert "-e lock_timeout=<seconds>" in msg and "-e break_lock=true" in msg and "sg-1" in msg
