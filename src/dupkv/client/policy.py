"""What the client does after a data RPC fails at the frame level (pure core).

The rules, in one table (`decide`):

| rDSN error                                                  | action                      |
|-------------------------------------------------------------|-----------------------------|
| ERR_INVALID_STATE, ERR_OBJECT_NOT_FOUND, ERR_SESSION_RESET, | REFRESH: re-query the route |
| ERR_NETWORK_FAILURE, ERR_PARENT_PARTITION_MISUSED,          | (query_cfg), then retry     |
| ERR_HANDLER_NOT_FOUND                                       |                             |
| ERR_TIMEOUT                                                 | RETRY at once, same route   |
| ERR_BUSY, ERR_SPLITTING                                     | BACKOFF, then retry         |
| anything else                                               | FAIL                        |

A non-idempotent op (incr, check_and_set, check_and_mutate, and a scan batch, which moves
the server's cursor) is never sent twice after an error that leaves its outcome unknown
(ERR_TIMEOUT, ERR_SESSION_RESET): the request may have been applied, and applying it again
would change the result. Such an error fails the op at once (for ERR_SESSION_RESET the route
is still marked stale). Errors that say the request was refused (not primary, not served,
could not connect, throttled) are retried for every op.

Retries are bounded by the op's deadline and by `MAX_ATTEMPTS`. A refresh is followed by an
immediate retry the first time and by a growing, jittered delay afterwards, so a partition
whose new primary is not known yet does not make the client hammer the meta server.
"""

from dataclasses import dataclass
from enum import Enum

from dupkv.base.errors import ErrorCode

ERR_SPLITTING = "ERR_SPLITTING"
ERR_PARENT_PARTITION_MISUSED = "ERR_PARENT_PARTITION_MISUSED"

MAX_ATTEMPTS = 64
BACKOFF_BASE_MS = 10.0
BACKOFF_MAX_MS = 1000.0


class Action(Enum):
    REFRESH = "refresh"
    RETRY = "retry"
    BACKOFF = "backoff"
    FAIL = "fail"


ROUTE_ERRORS = frozenset(
    {
        ErrorCode.INVALID_STATE,
        ErrorCode.OBJECT_NOT_FOUND,
        ErrorCode.SESSION_RESET,
        ErrorCode.NETWORK_FAILURE,
        ERR_PARENT_PARTITION_MISUSED,
        ErrorCode.HANDLER_NOT_FOUND,
    }
)
BACKOFF_ERRORS = frozenset({ErrorCode.BUSY, ERR_SPLITTING})
# The request may have reached the server and been applied.
AMBIGUOUS_ERRORS = frozenset({ErrorCode.TIMEOUT, ErrorCode.SESSION_RESET})


@dataclass(frozen=True)
class Step:
    action: Action
    delay_ms: float = 0.0
    route_stale: bool = False  # refresh the route before the next op, even when failing


def backoff_ms(attempt: int, rand: float) -> float:
    """Delay before retry number `attempt` (1-based): doubling from 10 ms up to 1 s, with
    `rand` in [0, 1) spreading it over [50 %, 100 %] so retrying clients do not align."""
    exp = min(max(attempt - 1, 0), 16)
    return min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * (1 << exp)) * (0.5 + 0.5 * rand)


def decide(error: str, attempt: int, *, idempotent: bool, rand: float) -> Step:
    """The next step after failed attempt number `attempt` (1-based) ended with `error`."""
    if attempt >= MAX_ATTEMPTS:
        return Step(Action.FAIL, route_stale=error in ROUTE_ERRORS)
    if error in AMBIGUOUS_ERRORS and not idempotent:
        return Step(Action.FAIL, route_stale=error in ROUTE_ERRORS)
    if error in ROUTE_ERRORS:
        delay = backoff_ms(attempt - 1, rand) if attempt > 1 else 0.0
        return Step(Action.REFRESH, delay)
    if error == ErrorCode.TIMEOUT:
        return Step(Action.RETRY)
    if error in BACKOFF_ERRORS:
        return Step(Action.BACKOFF, backoff_ms(attempt, rand))
    return Step(Action.FAIL)
