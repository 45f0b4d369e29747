"""The three kinds of errors, kept apart (pure).

1. A broken invariant is a bug: `assert`/`InvariantError`, never caught to carry on.
2. An operating error carries a Pegasus code: `RocksStatus` for the data RPCs' `error`
   field, and rDSN `ErrorCode` names for frame-level and meta errors. `DupkvError` is the
   exception form of the latter, raised by one layer and translated at the boundary.
3. A user's bad input raises `BadInput`, whose message names what was wrong and what is
   accepted.
"""

from enum import IntEnum


class RocksStatus(IntEnum):
    """RocksDB `Status::Code`: the `error` field of every rrdb response."""

    OK = 0
    NOT_FOUND = 1
    CORRUPTION = 2
    NOT_SUPPORTED = 3
    INVALID_ARGUMENT = 4
    IO_ERROR = 5
    MERGE_IN_PROGRESS = 6
    INCOMPLETE = 7
    SHUTDOWN_IN_PROGRESS = 8
    TIMED_OUT = 9
    ABORTED = 10
    BUSY = 11
    EXPIRED = 12
    TRY_AGAIN = 13


class ErrorCode:
    """rDSN error code names as they travel on the wire (a Thrift string)."""

    OK = "ERR_OK"
    UNKNOWN = "ERR_UNKNOWN"
    TIMEOUT = "ERR_TIMEOUT"
    INVALID_STATE = "ERR_INVALID_STATE"
    OBJECT_NOT_FOUND = "ERR_OBJECT_NOT_FOUND"
    INVALID_DATA = "ERR_INVALID_DATA"
    INVALID_PARAMETERS = "ERR_INVALID_PARAMETERS"
    HANDLER_NOT_FOUND = "ERR_HANDLER_NOT_FOUND"
    NETWORK_FAILURE = "ERR_NETWORK_FAILURE"
    SESSION_RESET = "ERR_SESSION_RESET"
    BUSY = "ERR_BUSY"
    BUSY_CREATING = "ERR_BUSY_CREATING"
    BUSY_DROPPING = "ERR_BUSY_DROPPING"
    APP_EXIST = "ERR_APP_EXIST"
    APP_NOT_EXIST = "ERR_APP_NOT_EXIST"
    OPERATION_DISABLED = "ERR_OPERATION_DISABLED"
    SERVICE_NOT_ACTIVE = "ERR_SERVICE_NOT_ACTIVE"
    DUP_EXIST = "ERR_DUP_EXIST"
    FORWARD_TO_OTHERS = "ERR_FORWARD_TO_OTHERS"
    NOT_ENOUGH_MEMBER = "ERR_NOT_ENOUGH_MEMBER"
    CAPACITY_EXCEEDED = "ERR_CAPACITY_EXCEEDED"
    FILE_OPERATION_FAILED = "ERR_FILE_OPERATION_FAILED"
    INCONSISTENT_STATE = "ERR_INCONSISTENT_STATE"
    CORRUPTION = "ERR_CORRUPTION"
    TRY_AGAIN = "ERR_TRY_AGAIN"


class DupkvError(Exception):
    """An operating error with an rDSN error code; `hint` is for humans."""

    def __init__(self, code: str, hint: str = "") -> None:
        super().__init__(f"{code}: {hint}" if hint else code)
        self.code = code
        self.hint = hint


class BadInput(ValueError):
    """A user's bad input: the message says what was wrong and what is accepted."""


class InvariantError(AssertionError):
    """A broken invariant: a bug, or data on disk that cannot be what we wrote."""


class CorruptLog(InvariantError):
    """The mutation log holds a damaged record that is not a torn tail."""
