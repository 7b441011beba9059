# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retry_call with a fake sleep: what is retried, how often, and how long it would wait."""

from __future__ import annotations

import email.utils
import random

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._retry import (
    backoff_delay,
    http_retry_after,
    parse_retry_after,
    retry_call,
)


class Transient(Exception):
    def __init__(self, retry_after=None):
        super().__init__("transient")
        self.retry_after = retry_after


class Fatal(Exception):
    pass


def script(*outcomes):
    """A callable that raises or returns the given outcomes in order, counting calls."""
    calls = []

    def func():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return func, calls


def is_transient(exc):
    return isinstance(exc, Transient)


def ceiling(low, high):
    """A `uniform` that always picks the top of the range, so delays are the jitter ceilings."""
    return high


@pytest.mark.parametrize(
    "outcomes, attempts, expect_result, expect_exc, expect_calls, expect_sleeps",
    [
        pytest.param(["ok"], 5, "ok", None, 1, [], id="first-try"),
        pytest.param([Transient(), Transient(), "ok"], 5, "ok", None, 3, [0.5, 1.0], id="two-retries"),
        pytest.param([Fatal()], 5, None, Fatal, 1, [], id="not-retryable-raises-at-once"),
        pytest.param([Transient(), Fatal()], 5, None, Fatal, 2, [0.5], id="fatal-after-transient"),
        pytest.param([Transient()] * 3, 3, None, Transient, 3, [0.5, 1.0], id="gives-up-after-attempts"),
        pytest.param([Transient()], 1, None, Transient, 1, [], id="one-attempt-never-sleeps"),
        pytest.param([Transient()] * 7 + ["ok"], 8, "ok", None, 8, [0.5, 1, 2, 4, 8, 8, 8], id="delay-capped"),
    ],
)
def test_retry_call_table(outcomes, attempts, expect_result, expect_exc, expect_calls, expect_sleeps):
    func, calls = script(*outcomes)
    sleeps = []
    if expect_exc is None:
        result = retry_call(func, is_retryable=is_transient, attempts=attempts, sleep=sleeps.append, uniform=ceiling)
        assert result == expect_result
    else:
        with pytest.raises(expect_exc):
            retry_call(func, is_retryable=is_transient, attempts=attempts, sleep=sleeps.append, uniform=ceiling)
    assert len(calls) == expect_calls
    assert sleeps == expect_sleeps


def test_full_jitter_draws_between_zero_and_ceiling():
    # The real random.uniform: every delay must lie in [0, min(cap, base * 2**n)].
    rng = random.Random(7)
    func, _calls = script(*([Transient()] * 9 + ["ok"]))
    sleeps = []
    retry_call(func, is_retryable=is_transient, attempts=10, base_delay=0.5, max_delay=8.0,
               sleep=sleeps.append, uniform=rng.uniform)
    ceilings = [min(8.0, 0.5 * 2 ** n) for n in range(9)]
    assert len(sleeps) == 9
    assert all(0.0 <= s <= c for s, c in zip(sleeps, ceilings))
    # Full jitter, not a fixed schedule: the draws are not all at the ceiling.
    assert sleeps != ceilings


@pytest.mark.parametrize(
    "hint, expected",
    [
        pytest.param(None, 0.5, id="no-hint-uses-backoff"),
        pytest.param(3.0, 3.0, id="hint-longer-than-backoff-wins"),
        pytest.param(0.1, 0.5, id="hint-shorter-keeps-backoff"),
        pytest.param(3600.0, 60.0, id="hint-bounded"),
        pytest.param(0, 0.5, id="zero-hint-ignored"),
    ],
)
def test_retry_after_hint(hint, expected):
    func, _calls = script(Transient(retry_after=hint), "ok")
    sleeps = []
    retry_call(func, is_retryable=is_transient, sleep=sleeps.append, uniform=ceiling,
               retry_after=lambda exc: exc.retry_after)
    assert sleeps == [expected]


def test_retry_after_not_asked_for_fatal_errors():
    asked = []
    func, _calls = script(Fatal())
    with pytest.raises(Fatal):
        retry_call(func, is_retryable=is_transient, sleep=lambda s: None, retry_after=asked.append)
    assert asked == []


def test_attempts_must_be_positive():
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        retry_call(lambda: "ok", is_retryable=is_transient, attempts=0)


def test_keyboard_interrupt_is_never_swallowed():
    func, calls = script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry_call(func, is_retryable=lambda exc: True, sleep=lambda s: None)
    assert len(calls) == 1


@pytest.mark.parametrize("attempt, expected", [(0, 0.5), (1, 1.0), (4, 8.0), (5, 8.0), (500, 8.0)])
def test_backoff_delay_ceiling(attempt, expected):
    assert backoff_delay(attempt, 0.5, 8.0, uniform=ceiling) == expected


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("7", 7.0, id="delta-seconds"),
        pytest.param(" 12 ", 12.0, id="delta-seconds-spaces"),
        pytest.param(email.utils.formatdate(NOW + 30, usegmt=True), 30.0, id="http-date"),
        pytest.param(email.utils.formatdate(NOW - 30, usegmt=True), 0.0, id="http-date-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_http_retry_after_reads_headers():
    class WithHeaders(Exception):
        headers = {"Retry-After": "4"}

    assert http_retry_after(WithHeaders()) == 4.0
    assert http_retry_after(Fatal()) is None
