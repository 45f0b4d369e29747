"""The duplication status table: every (from, to) pair of behaviour 7, and the enum values."""

import pytest

from dupkv.base.errors import ErrorCode
from dupkv.duplication.status import (
    TRANSITIONS,
    DupStatus,
    FailMode,
    check_transition,
    is_valid_status,
    parse_fail_mode,
    parse_status,
)
from dupkv.rpc.idl_meta import dup

INIT, PREPARE, APP, LOG, PAUSE, REMOVED = (
    DupStatus.DS_INIT,
    DupStatus.DS_PREPARE,
    DupStatus.DS_APP,
    DupStatus.DS_LOG,
    DupStatus.DS_PAUSE,
    DupStatus.DS_REMOVED,
)
OK, BAD, GONE = ErrorCode.OK, ErrorCode.INVALID_PARAMETERS, ErrorCode.OBJECT_NOT_FOUND

# Behaviour 7, written out as the whole matrix: rows are the current status, columns the
# requested one, in the order INIT, PREPARE, APP, LOG, PAUSE, REMOVED.
EXPECTED = {
    INIT: (OK, OK, BAD, OK, BAD, OK),
    PREPARE: (BAD, OK, OK, BAD, BAD, OK),
    APP: (BAD, BAD, OK, OK, BAD, OK),
    LOG: (BAD, BAD, BAD, OK, OK, OK),
    PAUSE: (BAD, BAD, BAD, OK, OK, OK),
    REMOVED: (GONE, GONE, GONE, GONE, GONE, GONE),
}
ORDER = (INIT, PREPARE, APP, LOG, PAUSE, REMOVED)


@pytest.mark.parametrize(
    "current,to,expected",
    [(c, t, EXPECTED[c][i]) for c in ORDER for i, t in enumerate(ORDER)],
    ids=lambda v: v.name if isinstance(v, DupStatus) else v,
)
def test_transition_matrix(current: DupStatus, to: DupStatus, expected: str) -> None:
    assert check_transition(current, to) == expected


def test_the_table_covers_every_status_and_never_lists_a_self_loop() -> None:
    assert set(TRANSITIONS) == set(DupStatus)
    for current, targets in TRANSITIONS.items():
        assert current not in targets


def test_values_match_the_thrift_enums() -> None:
    for status in DupStatus:
        assert getattr(dup.duplication_status, status.name) == status.value
    for mode in FailMode:
        assert getattr(dup.duplication_fail_mode, mode.name) == mode.value
    assert len(DupStatus) == 6 and len(FailMode) == 3


def test_only_running_statuses_are_valid() -> None:
    assert [s for s in DupStatus if is_valid_status(s)] == [PREPARE, APP, LOG, PAUSE]


def test_names_parse_and_unknown_names_say_what_is_accepted() -> None:
    assert parse_status("DS_LOG") is LOG
    assert parse_fail_mode("FAIL_SKIP") is FailMode.FAIL_SKIP
    with pytest.raises(ValueError, match="DS_FOO.*DS_INIT, DS_PREPARE"):
        parse_status("DS_FOO")
    with pytest.raises(ValueError, match="slow.*FAIL_SLOW, FAIL_SKIP, FAIL_FAST"):
        parse_fail_mode("slow")
