"""Evaluation of Pegasus's atomic writes: incr, check_and_set, check_and_mutate (pure).

Each function takes the current stored value of the keys it reads (already decoded: `None`
when absent, expired or a tombstone) and returns what to write plus the answer for the
client. The partition applies the result either directly (replaying a logged atomic
request) or logs the produced puts/deletes instead of the request (idempotent mode).
"""

from dataclasses import dataclass, field

from dupkv.base.errors import RocksStatus

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_C_SPACE = b" \t\n\v\f\r"


def parse_int64(data: bytes) -> int | None:
    """C `strtoll(s, &end, 0)` that must consume the whole string; None when it cannot.

    Leading white space and a sign are accepted; `0x`/`0X` selects hex, a leading `0` octal.
    Out-of-range values are rejected, as Pegasus does when strtoll reports ERANGE.
    """
    if not data or b"\x00" in data:
        return None
    s = data.lstrip(_C_SPACE)
    negative = False
    if s[:1] in (b"+", b"-"):
        negative = s[:1] == b"-"
        s = s[1:]
    if s[:2] in (b"0x", b"0X") and len(s) > 2:
        base, digits = 16, s[2:]
    elif s[:1] == b"0" and len(s) > 1:
        base, digits = 8, s[1:]
    else:
        base, digits = 10, s
    if not digits or not _all_digits(digits, base):
        return None
    value = int(digits, base)
    if negative:
        value = -value
    if value < INT64_MIN or value > INT64_MAX:
        return None
    return value


def _all_digits(digits: bytes, base: int) -> bool:
    allowed = (
        b"0123456789abcdefABCDEF" if base == 16 else b"01234567" if base == 8 else b"0123456789"
    )
    return all(c in allowed for c in digits)


class CheckType:
    """`cas_check_type` values."""

    NO_CHECK = 0
    VALUE_NOT_EXIST = 1
    VALUE_NOT_EXIST_OR_EMPTY = 2
    VALUE_EXIST = 3
    VALUE_NOT_EMPTY = 4
    MATCH_ANYWHERE = 5
    MATCH_PREFIX = 6
    MATCH_POSTFIX = 7
    BYTES_LESS = 8
    BYTES_LESS_OR_EQUAL = 9
    BYTES_EQUAL = 10
    BYTES_GREATER_OR_EQUAL = 11
    BYTES_GREATER = 12
    INT_LESS = 13
    INT_LESS_OR_EQUAL = 14
    INT_EQUAL = 15
    INT_GREATER_OR_EQUAL = 16
    INT_GREATER = 17
    MAX = 17


_COMPARE = {
    0: lambda a, b: a < b,
    1: lambda a, b: a <= b,
    2: lambda a, b: a == b,
    3: lambda a, b: a >= b,
    4: lambda a, b: a > b,
}


class InvalidOperand(Exception):
    """An int comparison met a value or operand that is not an int64."""


def check_passes(check_type: int, value: bytes | None, operand: bytes) -> bool:
    """Evaluate one check; `value` is None when the record is absent or expired.

    Raises InvalidOperand for an int comparison on non-integers and ValueError for a check
    type outside 0..17.
    """
    exist = value is not None
    if check_type == CheckType.NO_CHECK:
        return True
    if check_type == CheckType.VALUE_NOT_EXIST:
        return not exist
    if check_type == CheckType.VALUE_NOT_EXIST_OR_EMPTY:
        return not exist or value == b""
    if check_type == CheckType.VALUE_EXIST:
        return exist
    if check_type == CheckType.VALUE_NOT_EMPTY:
        return exist and value != b""
    if CheckType.MATCH_ANYWHERE <= check_type <= CheckType.MATCH_POSTFIX:
        if value is None:
            return False
        if not operand:
            return True
        if check_type == CheckType.MATCH_ANYWHERE:
            return operand in value
        if check_type == CheckType.MATCH_PREFIX:
            return value.startswith(operand)
        return value.endswith(operand)
    if CheckType.BYTES_LESS <= check_type <= CheckType.BYTES_GREATER:
        return value is not None and _COMPARE[check_type - CheckType.BYTES_LESS](value, operand)
    if CheckType.INT_LESS <= check_type <= CheckType.INT_GREATER:
        if value is None:
            return False
        v, o = parse_int64(value), parse_int64(operand)
        if v is None or o is None:
            raise InvalidOperand()
        return _COMPARE[check_type - CheckType.INT_LESS](v, o)
    raise ValueError(f"unknown check type {check_type}; accepted: 0..{CheckType.MAX}")


@dataclass
class Produced:
    """Writes produced by an atomic op: (sort_key, value, expire_ts) puts and sort_key deletes."""

    puts: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    deletes: list[bytes] = field(default_factory=list)


@dataclass
class IncrResult:
    error: int
    new_value: int
    produced: Produced | None  # None when nothing is written


def evaluate_incr(
    old_value: bytes | None, old_expire_ts: int, increment: int, req_expire_ts: int
) -> IncrResult:
    """incr on one record; `old_value` None when absent or expired."""
    if old_value is None or old_value == b"":
        base = 0
    else:
        parsed = parse_int64(old_value)
        if parsed is None:
            return IncrResult(RocksStatus.INVALID_ARGUMENT, 0, None)
        base = parsed
    new_value = base + increment
    if new_value < INT64_MIN or new_value > INT64_MAX:
        return IncrResult(RocksStatus.INVALID_ARGUMENT, base, None)
    if req_expire_ts > 0:
        expire_ts = req_expire_ts
    elif req_expire_ts < 0 or old_value is None:
        expire_ts = 0
    else:
        expire_ts = old_expire_ts
    produced = Produced(puts=[(b"", str(new_value).encode(), expire_ts)])
    return IncrResult(RocksStatus.OK, new_value, produced)


@dataclass
class CheckResult:
    error: int
    check_value_exist: bool
    check_value: bytes
    produced: Produced | None


def evaluate_check_and_set(
    check_value: bytes | None,
    check_type: int,
    operand: bytes,
    set_sort_key: bytes,
    set_value: bytes,
    set_expire_ts: int,
) -> CheckResult:
    """`set_sort_key` is the sort key to write (the check sort key unless set_diff_sort_key)."""
    return _check_then(
        check_value, check_type, operand, Produced(puts=[(set_sort_key, set_value, set_expire_ts)])
    )


MO_PUT = 0
MO_DELETE = 1


def evaluate_check_and_mutate(
    check_value: bytes | None,
    check_type: int,
    operand: bytes,
    mutations: list[tuple[int, bytes, bytes, int]],
) -> CheckResult:
    """`mutations` are (operation, sort_key, value, expire_ts); an empty list or an unknown
    operation is invalid input."""
    produced = Produced()
    if not mutations:
        return CheckResult(RocksStatus.INVALID_ARGUMENT, False, b"", None)
    for op, sort_key, value, expire_ts in mutations:
        if op == MO_PUT:
            produced.puts.append((sort_key, value, expire_ts))
        elif op == MO_DELETE:
            produced.deletes.append(sort_key)
        else:
            return CheckResult(RocksStatus.INVALID_ARGUMENT, False, b"", None)
    return _check_then(check_value, check_type, operand, produced)


def _check_then(
    check_value: bytes | None, check_type: int, operand: bytes, produced: Produced
) -> CheckResult:
    exist = check_value is not None
    shown = check_value if check_value is not None else b""
    try:
        passed = check_passes(check_type, check_value, operand)
    except InvalidOperand:
        return CheckResult(RocksStatus.INVALID_ARGUMENT, exist, shown, None)
    except ValueError:
        return CheckResult(RocksStatus.INVALID_ARGUMENT, False, b"", None)
    if not passed:
        return CheckResult(RocksStatus.TRY_AGAIN, exist, shown, None)
    return CheckResult(RocksStatus.OK, exist, shown, produced)
