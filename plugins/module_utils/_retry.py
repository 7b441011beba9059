# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one retry helper: capped exponential backoff with full jitter.

Full jitter (a delay drawn uniformly from [0, min(cap, base * 2**n)]) spreads the retries of many
clients that failed together, which matters for a shared service such as discovery.etcd.io; see
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/ . The caller says exactly
which errors are worth retrying, so a bad request fails at once instead of after a minute of sleeps.
A server that says when to come back (HTTP Retry-After) is believed, within a bound.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

# A Retry-After beyond this is not waited for in full: a module run that blocks for many minutes on
# one call looks hung. The hint still raises the delay above the jittered one.
MAX_RETRY_AFTER = 60.0


def backoff_delay(attempt: int, base_delay: float, max_delay: float, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """The full-jitter delay before retry number `attempt` (0 for the first retry)."""
    # min() before the power would overflow for large attempt numbers; 2**n of an int stays exact.
    ceiling = max_delay if attempt >= 63 else min(max_delay, base_delay * (2 ** attempt))
    return uniform(0.0, ceiling)


def retry_call(
    func: Callable[[], T],
    *,
    is_retryable: Callable[[BaseException], bool],
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], object] = time.sleep,
    retry_after: Optional[Callable[[BaseException], Optional[float]]] = None,
    max_retry_after: float = MAX_RETRY_AFTER,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Call `func()` until it returns, at most `attempts` times in all.

    An exception for which `is_retryable(exc)` is false, or the one from the last attempt, is raised
    as it is (callers turn it into a ClusterError with context). Between attempts it sleeps a
    full-jitter delay; when `retry_after(exc)` gives a number of seconds, the delay is at least that
    (bounded by `max_retry_after`). `sleep` and `uniform` are injectable so tests do not wait.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    attempt = 0
    while True:
        try:
            return func()
        except Exception as exc:  # noqa: BLE001 - the predicate decides; non-retryable ones re-raise
            if attempt + 1 >= attempts or not is_retryable(exc):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay, uniform)
            hint = retry_after(exc) if retry_after is not None else None
            if hint is not None and hint > 0:
                delay = max(delay, min(hint, max_retry_after))
            sleep(delay)
            attempt += 1


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header value: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def http_retry_after(exc: BaseException) -> Optional[float]:
    """The Retry-After hint carried by an HTTP error (urllib's HTTPError has `.headers`), if any."""
    headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After")
    except AttributeError:
        return None
    return parse_retry_after(value)
