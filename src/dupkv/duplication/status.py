"""Duplication status, fail mode and the legal status transitions (pure core).

Shared by the meta server (which owns a duplication's status and persists it) and the replica
servers (which act on the status the meta server sends them). The values are those of the
Thrift enums `duplication_status` and `duplication_fail_mode`, and the names are what the
metadata JSON, the HTTP endpoints and the shell show.

The rules are the table just below (Pegasus's `duplication_info::is_valid_alteration`): a
change of status is legal only if the target is listed for the current status. Asking for the
current status is always legal and changes nothing, except on a removed duplication, which no
longer exists for any request.
"""

from enum import IntEnum

from dupkv.base.errors import ErrorCode


class DupStatus(IntEnum):
    DS_INIT = 0
    DS_PREPARE = 1  # full duplication: the replicas make a checkpoint for the follower
    DS_APP = 2  # full duplication: the follower table copies the checkpoint
    DS_LOG = 3  # shipping the log
    DS_PAUSE = 4
    DS_REMOVED = 5


class FailMode(IntEnum):
    FAIL_SLOW = 0
    FAIL_SKIP = 1
    FAIL_FAST = 2


# from -> the statuses it may change to (besides itself). DS_REMOVED is terminal.
TRANSITIONS: dict[DupStatus, frozenset[DupStatus]] = {
    DupStatus.DS_INIT: frozenset({DupStatus.DS_PREPARE, DupStatus.DS_LOG, DupStatus.DS_REMOVED}),
    DupStatus.DS_PREPARE: frozenset({DupStatus.DS_APP, DupStatus.DS_REMOVED}),
    DupStatus.DS_APP: frozenset({DupStatus.DS_LOG, DupStatus.DS_REMOVED}),
    DupStatus.DS_LOG: frozenset({DupStatus.DS_PAUSE, DupStatus.DS_REMOVED}),
    DupStatus.DS_PAUSE: frozenset({DupStatus.DS_LOG, DupStatus.DS_REMOVED}),
    DupStatus.DS_REMOVED: frozenset(),
}

# Statuses a duplication really runs in: sent to replicas, restored at meta start, counted for
# `app.duplicating`. DS_INIT (not started yet) and DS_REMOVED are the "invalid" ones.
VALID_STATUSES = frozenset(
    {DupStatus.DS_PREPARE, DupStatus.DS_APP, DupStatus.DS_LOG, DupStatus.DS_PAUSE}
)


def check_transition(current: DupStatus, to: DupStatus) -> str:
    """The error code of changing `current` to `to`: ERR_OK when legal (also when `to` is
    `current`, a no-op), ERR_OBJECT_NOT_FOUND for a removed duplication, else
    ERR_INVALID_PARAMETERS."""
    if current == DupStatus.DS_REMOVED:
        return ErrorCode.OBJECT_NOT_FOUND
    if to == current or to in TRANSITIONS[current]:
        return ErrorCode.OK
    return ErrorCode.INVALID_PARAMETERS


def is_valid_status(status: DupStatus) -> bool:
    return status in VALID_STATUSES


def parse_status(name: str) -> DupStatus:
    """The status named `name` (e.g. "DS_LOG"); ValueError naming the accepted names."""
    try:
        return DupStatus[name]
    except KeyError:
        accepted = ", ".join(s.name for s in DupStatus)
        raise ValueError(f"unknown duplication status {name!r}; accepted: {accepted}") from None


def parse_fail_mode(name: str) -> FailMode:
    """The fail mode named `name` (e.g. "FAIL_SKIP"); ValueError naming the accepted names."""
    try:
        return FailMode[name]
    except KeyError:
        accepted = ", ".join(m.name for m in FailMode)
        raise ValueError(f"unknown duplication fail mode {name!r}; accepted: {accepted}") from None
