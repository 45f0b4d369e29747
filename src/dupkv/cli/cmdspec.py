"""Declaring a shell command's arguments once, and parsing them (pure core).

A `Command` names its positional `Arg`s and its `Opt`s; from that one declaration come its
usage line and an argparse parser that never exits the process: every problem (a missing
or extra argument, an unknown option, a value its converter refuses) raises `UsageError`
with argparse's message, which names the argument and what it accepts.

Converters (`boolean`, `whole`, `int64`, ...) raise `argparse.ArgumentTypeError` with a
message saying what is accepted, which argparse puts after the argument's name.
"""

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

I32_MAX = (1 << 31) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


class UsageError(ValueError):
    """Bad arguments to a command; the message says what was wrong and what is accepted."""


@dataclass(frozen=True)
class Arg:
    """A positional argument: required, `optional` ([name]) or `many` (name..., one or more;
    with optional, zero or more)."""

    name: str
    type: Callable[[str], Any] = str
    optional: bool = False
    many: bool = False
    shown: str = ""  # the usage text, when `<name>` is not clear enough

    def usage(self) -> str:
        if self.shown:
            return self.shown
        text = f"<{self.name}>"
        if self.many:
            text += " ..."
        return f"[{text}]" if self.optional else text


@dataclass(frozen=True)
class Opt:
    """An option: `-x|--long VALUE`, or a flag when `metavar` is empty."""

    short: str
    long: str
    metavar: str = ""
    help: str = ""
    type: Callable[[str], Any] = str
    default: Any = None
    required: bool = False

    @property
    def dest(self) -> str:
        return self.long.lstrip("-")

    def usage(self) -> str:
        names = f"{self.short}|{self.long}" if self.short else self.long
        text = f"{names} {self.metavar}" if self.metavar else names
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class Command:
    """One shell command: what it is called, what it runs and what it takes."""

    name: str
    handler: Callable[..., bool]
    help: str
    args: tuple[Arg, ...] = ()
    opts: tuple[Opt, ...] = ()
    group: str = ""
    aliases: tuple[str, ...] = ()
    needs_table: bool = False  # a data command: fails with "No app is using now" before `use`
    details: str = ""  # more text for `help <command>`
    _parser: list[argparse.ArgumentParser] = field(
        default_factory=list, init=False, repr=False, compare=False
    )  # built on first use

    def usage(self) -> str:
        return " ".join(
            [self.name, *(a.usage() for a in self.args), *(o.usage() for o in self.opts)]
        )

    def parse(self, words: Sequence[str]) -> argparse.Namespace:
        """The arguments after the command name, parsed; UsageError if they do not fit."""
        if not self._parser:
            self._parser.append(_build(self))
        words = list(words)
        if self.args and not self.opts:
            words = ["--", *words]  # values like "-5" or "-x" are data, not options
        try:
            return self._parser[0].parse_args(words)
        except argparse.ArgumentError as e:
            raise UsageError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise UsageError(message or f"exit {status}")


def _build(cmd: Command) -> argparse.ArgumentParser:
    p = _Parser(prog=cmd.name, add_help=False, allow_abbrev=False, exit_on_error=False)
    for a in cmd.args:
        nargs: str | None = None
        if a.many:
            nargs = "*" if a.optional else "+"
        elif a.optional:
            nargs = "?"
        p.add_argument(a.name, type=a.type, nargs=nargs)
    for o in cmd.opts:
        flags = [f for f in (o.short, o.long) if f]
        if o.metavar:
            p.add_argument(
                *flags,
                dest=o.dest,
                type=o.type,
                default=o.default,
                metavar=o.metavar,
                required=o.required,
            )
        else:
            p.add_argument(*flags, dest=o.dest, action="store_true")
    return p


# -- converters ----------------------------------------------------------------------------


def boolean(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; accepted: true or false")


def _integer(text: str, what: str, low: int, high: int, accepted: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}; accepted: {accepted}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}; accepted: {accepted}")
    return value


def ttl_seconds(text: str) -> int:
    return _integer(text, "ttl", 1, I32_MAX, "a whole number of seconds greater than 0")


def int64(text: str) -> int:
    return _integer(text, "number", I64_MIN, I64_MAX, "a 64-bit integer, e.g. 1 or -5")


def count(text: str) -> int:
    return _integer(text, "count", -1, I32_MAX, "a whole number (-1 or 0 for no limit)")


def positive(text: str) -> int:
    return _integer(text, "number", 1, I32_MAX, "a whole number greater than 0")


def non_negative(text: str) -> int:
    return _integer(text, "number", 0, I32_MAX, "a whole number, 0 or more")


def dupid(text: str) -> int:
    return _integer(text, "dupid", 0, I32_MAX, "a duplication id, as `dup list` shows it")


def choice(*names: str) -> Callable[[str], str]:
    """A converter accepting exactly these names."""

    def convert(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not accepted; accepted: {', '.join(names)}"
            )
        return text

    convert.__name__ = "choice"
    return convert
