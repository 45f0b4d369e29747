"""`dupkv shell`: Pegasus's shell for dupkv (and Pegasus) clusters, with admin-cli's `dup`
commands.

    dupkv shell [--meta host:port,... | -n CLUSTER --config FILE] [-e "use t; get h s"]

The command table just below says every command: its name, handler, arguments, options and
help; usage lines, `help` and the argument parsing all come from it. The handlers live in
`shell_admin` (cluster and tables), `shell_data` (data) and `shell_dup` (duplication).

Input: commands end at `;` or a newline; words may be quoted ("a b", '' for an empty key);
keys and values take C escapes (`\\x00`, `\\n`, `\\\\`, ...). Output goes to stdout, error
messages too (one stream, in order, as Pegasus's shell does on stderr). A command that fails
prints why and the shell goes on; with `-e` or with commands piped on stdin the exit status
is 1 if any command failed. Interactive mode (a terminal) has a `>>> ` prompt, readline
editing, completion of command names and history in ~/.dupkv_history.
"""

import argparse
import contextlib
import difflib
import os
import sys
import traceback
from pathlib import Path

from dupkv.base.config import Config
from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.cli import shell_admin as adm
from dupkv.cli import shell_data as dat
from dupkv.cli import shell_dup as dup
from dupkv.cli.cmdspec import (
    Arg,
    Command,
    Opt,
    UsageError,
    boolean,
    choice,
    count,
    dupid,
    int64,
    non_negative,
    positive,
    ttl_seconds,
)
from dupkv.cli.session import DEFAULT_META, NoTable, Session
from dupkv.cli.textfmt import SyntaxProblem, split_commands
from dupkv.client.client import parse_meta_servers

PROMPT = ">>> "
HISTORY_FILE = "~/.dupkv_history"
HISTORY_LENGTH = 1000
SCAN_TIMEOUT_MS = 5000
HELP_COLUMN = 40  # where option help starts in `help <command>`

TABLES, DATA, DUP, SHELL = "cluster and tables", "data (after `use`)", "duplication", "shell"

# Shared argument and option declarations.
HK, SK, VALUE = Arg("hash_key"), Arg("sort_key"), Arg("value")
START_SK, STOP_SK = Arg("start_sort_key"), Arg("stop_sort_key")
APP = Arg("app_name")
DETAILED = Opt("-d", "--detailed", help="more detail")
JSON = Opt("-j", "--json", help="print JSON instead of tables")
FILTER = choice(*dat.FILTER_TYPES)
VALUE_FILTER = choice(*dat.VALUE_FILTER_TYPES)
START_INCL = Opt(
    "-a", "--start_inclusive", "true|false", "include the start sort key", boolean, True
)
STOP_INCL = Opt("-b", "--stop_inclusive", "true|false", "include the stop sort key", boolean, False)
SK_FILTER = (
    Opt("-s", "--sort_key_filter_type", "anywhere|prefix|postfix", "filter sort keys", FILTER),
    Opt("-y", "--sort_key_filter_pattern", "PATTERN", "the sort key filter's pattern"),
)
HK_FILTER = (
    Opt("-h", "--hash_key_filter_type", "anywhere|prefix|postfix", "filter hash keys", FILTER),
    Opt("-x", "--hash_key_filter_pattern", "PATTERN", "the hash key filter's pattern"),
)
VALUE_FILTERS = (
    Opt(
        "-v",
        "--value_filter_type",
        "anywhere|prefix|postfix|exact",
        "filter values (by the shell)",
        VALUE_FILTER,
    ),
    Opt("-z", "--value_filter_pattern", "PATTERN", "the value filter's pattern"),
)
SCAN_OUTPUT = (
    Opt("-n", "--max_count", "NUM", "print at most NUM records (default: all)", count, -1),
    Opt("-t", "--timeout_ms", "MS", "timeout of each scan RPC", positive, SCAN_TIMEOUT_MS),
    Opt("-d", "--detailed", help="append {app_id, partition_index, server} to each record"),
    Opt("-i", "--no_value", help="print keys only"),
)
DUPID_OPT = Opt(
    "-d", "--dupid", "DUPID", "the duplication's id (see `dup list`)", dupid, required=True
)
DUPID = Arg("dupid", dupid)

COMMANDS: tuple[Command, ...] = (
    # -- cluster and tables ---------------------------------------------------------------
    Command(
        "ls",
        adm.do_ls,
        "list the tables",
        group=TABLES,
        opts=(
            Opt("-a", "--all", help="also dropped tables"),
            Opt("-d", "--detailed", help="add partition health"),
            JSON,
        ),
    ),
    Command(
        "create",
        adm.do_create,
        "create a table and wait until it is ready",
        group=TABLES,
        args=(APP,),
        opts=(
            Opt("-p", "--partition_count", "NUM", "partitions (a power of two)", positive, 4),
            Opt("-r", "--replica_count", "NUM", "replicas (dupkv keeps 1)", positive, 1),
            Opt("-e", "--envs", "k1=v1,k2=v2", "table envs"),
            Opt("-f", "--fail_if_exist", help="fail if the table exists"),
        ),
        details="Without -f, an existing table of that name counts as created.",
    ),
    Command(
        "drop",
        adm.do_drop,
        "drop a table",
        group=TABLES,
        args=(APP,),
        opts=(
            Opt(
                "-r",
                "--reserve_seconds",
                "NUM",
                "keep its data this long (0: the meta server's default)",
                non_negative,
                0,
            ),
        ),
    ),
    Command(
        "use",
        adm.do_use,
        "choose the table data and dup commands work on",
        group=TABLES,
        args=(APP,),
    ),
    Command(
        "app",
        adm.do_app,
        "show a table",
        group=TABLES,
        args=(APP,),
        opts=(Opt("-d", "--detailed", help="add partitions, nodes and health"), JSON),
    ),
    Command(
        "nodes",
        adm.do_nodes,
        "list the replica servers",
        group=TABLES,
        opts=(Opt("-d", "--detailed", help="add replica counts"), JSON),
    ),
    Command(
        "cluster_info",
        adm.do_cluster_info,
        "show the cluster's meta information",
        group=TABLES,
        opts=(JSON,),
    ),
    Command(
        "cc",
        adm.do_cc,
        "change to another cluster",
        group=TABLES,
        args=(Arg("cluster_name"),),
        details="CLUSTER is a name from [pegasus.clusters] of --config, or host:port,...",
    ),
    # -- data -------------------------------------------------------------------------------
    Command(
        "set",
        dat.do_set,
        "write a value",
        group=DATA,
        needs_table=True,
        args=(HK, SK, VALUE, Arg("ttl_seconds", ttl_seconds, optional=True)),
    ),
    Command(
        "multi_set",
        dat.do_multi_set,
        "write several sort keys of one hash key",
        group=DATA,
        needs_table=True,
        args=(
            HK,
            Arg("sort_key_value", many=True, shown="<sort_key> <value> [<sort_key> <value> ...]"),
        ),
    ),
    Command("get", dat.do_get, "read a value", group=DATA, needs_table=True, args=(HK, SK)),
    Command(
        "multi_get",
        dat.do_multi_get,
        "read sort keys of a hash key (none: all)",
        group=DATA,
        needs_table=True,
        args=(HK, Arg("sort_key", optional=True, many=True)),
    ),
    Command(
        "multi_get_range",
        dat.do_multi_get_range,
        "read a sort key range of a hash key",
        group=DATA,
        needs_table=True,
        args=(HK, START_SK, STOP_SK),
        opts=(
            START_INCL,
            STOP_INCL,
            *SK_FILTER,
            Opt("-n", "--max_count", "NUM", "at most NUM records (-1: no limit)", count, -1),
            Opt("-i", "--no_value", help="keys only"),
            Opt("-r", "--reverse", help="from the stop key backwards"),
        ),
    ),
    Command(
        "multi_get_sortkeys",
        dat.do_multi_get_sortkeys,
        "list the sort keys of a hash key",
        group=DATA,
        needs_table=True,
        args=(HK,),
    ),
    Command("del", dat.do_del, "delete a value", group=DATA, needs_table=True, args=(HK, SK)),
    Command(
        "multi_del",
        dat.do_multi_del,
        "delete sort keys of a hash key",
        group=DATA,
        needs_table=True,
        args=(HK, Arg("sort_key", many=True)),
    ),
    Command(
        "exist", dat.do_exist, "does the record exist", group=DATA, needs_table=True, args=(HK, SK)
    ),
    Command(
        "ttl",
        dat.do_ttl,
        "seconds the record has left",
        group=DATA,
        needs_table=True,
        args=(HK, SK),
    ),
    Command(
        "incr",
        dat.do_incr,
        "add to an integer value (default 1)",
        group=DATA,
        needs_table=True,
        args=(HK, SK, Arg("increment", int64, optional=True)),
    ),
    Command(
        "check_and_set",
        dat.do_check_and_set,
        "set a sort key if a check on another (or the same) passes",
        group=DATA,
        needs_table=True,
        args=(HK,),
        opts=(
            Opt("-c", "--check_sort_key", "SORT_KEY", "the sort key to check"),
            Opt("-t", "--check_type", "TYPE", "the check (see below)", choice(*dat.CHECK_TYPES)),
            Opt("-o", "--check_operand", "OPERAND", "what the check compares with"),
            Opt("-s", "--set_sort_key", "SORT_KEY", "the sort key to set"),
            Opt("-v", "--set_value", "VALUE", "the value to set"),
            Opt("-l", "--set_value_ttl_seconds", "NUM", "TTL of the value set", non_negative, 0),
            Opt("-r", "--return_check_value", help="print the checked value"),
        ),
        details="check types: " + ", ".join(dat.CHECK_TYPES),
    ),
    Command(
        "count",
        dat.do_count,
        "count the sort keys of a hash key",
        group=DATA,
        needs_table=True,
        args=(HK,),
    ),
    Command(
        "hash_scan",
        dat.do_hash_scan,
        "scan a sort key range of a hash key",
        group=DATA,
        aliases=("scan",),
        needs_table=True,
        args=(HK, START_SK, STOP_SK),
        opts=(START_INCL, STOP_INCL, *SK_FILTER, *VALUE_FILTERS, *SCAN_OUTPUT),
    ),
    Command(
        "full_scan",
        dat.do_full_scan,
        "scan the whole table",
        group=DATA,
        needs_table=True,
        opts=(*HK_FILTER, *SK_FILTER, *VALUE_FILTERS, *SCAN_OUTPUT),
    ),
    Command(
        "count_data",
        dat.do_count_data,
        "count the table's records",
        group=DATA,
        needs_table=True,
        opts=(
            Opt("-c", "--precise", help="count exactly, by scanning the table"),
            Opt(
                "-t",
                "--timeout_ms",
                "MS",
                "timeout of each scan RPC (-c)",
                positive,
                SCAN_TIMEOUT_MS,
            ),
            JSON,
        ),
        details="Without -c: RocksDB's estimates (rdb_estimated_keys) from the replica "
        "servers' /metrics.",
    ),
    Command("hash", dat.do_hash, "a key's hash and partition", group=DATA, args=(HK, SK)),
    # -- duplication --------------------------------------------------------------------------
    Command(
        "dup list",
        dup.do_dup_list,
        "list the table's duplications (JSON)",
        group=DUP,
        needs_table=True,
        aliases=("dup ls",),
        opts=(Opt("-d", "--detailed", help="add per-partition progress and backlog"),),
    ),
    Command(
        "dup add",
        dup.do_dup_add,
        "duplicate the table to another cluster",
        group=DUP,
        needs_table=True,
        opts=(
            Opt(
                "-c",
                "--cluster",
                "CLUSTER",
                "the remote cluster (its name on the meta)",
                required=True,
            ),
            Opt("-p", "--checkpoint", help="full duplication (not supported yet)"),
        ),
    ),
    Command(
        "dup pause",
        dup.do_dup_pause,
        "pause a duplication (from DS_LOG)",
        group=DUP,
        needs_table=True,
        opts=(DUPID_OPT,),
    ),
    Command(
        "dup start",
        dup.do_dup_start,
        "resume a paused duplication",
        group=DUP,
        needs_table=True,
        opts=(DUPID_OPT,),
    ),
    Command(
        "dup remove",
        dup.do_dup_remove,
        "remove a duplication",
        group=DUP,
        needs_table=True,
        aliases=("dup rm",),
        opts=(DUPID_OPT,),
    ),
    Command(
        "add_dup",
        dup.do_add_dup,
        "Pegasus shell's dup add",
        group=DUP,
        args=(APP, Arg("remote_cluster_name")),
        opts=(
            Opt("-s", "--sst", help="full duplication (not supported yet)"),
            Opt("-a", "--remote_app_name", "NAME", "the remote table (default: the same)"),
            Opt(
                "-r", "--remote_replica_count", "NUM", "its replicas (0: as here)", non_negative, 0
            ),
        ),
    ),
    Command(
        "query_dup",
        dup.do_query_dup,
        "Pegasus shell's dup list",
        group=DUP,
        args=(APP,),
        opts=(Opt("-d", "--detailed", help="JSON with per-partition progress"),),
    ),
    Command(
        "pause_dup", dup.do_pause_dup, "Pegasus shell's dup pause", group=DUP, args=(APP, DUPID)
    ),
    Command(
        "start_dup", dup.do_start_dup, "Pegasus shell's dup start", group=DUP, args=(APP, DUPID)
    ),
    Command(
        "remove_dup", dup.do_remove_dup, "Pegasus shell's dup remove", group=DUP, args=(APP, DUPID)
    ),
    Command(
        "set_dup_fail_mode",
        dup.do_set_dup_fail_mode,
        "what shipping does with a write that keeps failing",
        group=DUP,
        args=(APP, DUPID, Arg("fail_mode", choice(*dup.FAIL_MODES), shown="<slow|skip>")),
    ),
    # -- the shell itself ---------------------------------------------------------------------
    Command(
        "escape_all",
        adm.do_escape_all,
        "print every byte of keys and values as \\xNN",
        group=SHELL,
        args=(Arg("enabled", boolean, optional=True, shown="[true|false]"),),
    ),
    Command(
        "help",
        lambda s, a: _help(s, a),
        "list the commands, or explain one",
        group=SHELL,
        args=(Arg("command", optional=True, many=True),),
    ),
    Command(
        "exit",
        lambda s, a: _exit(s),
        "leave the shell (also Ctrl-D)",
        group=SHELL,
        aliases=("quit",),
    ),
)

BY_NAME: dict[str, Command] = {}
for _cmd in COMMANDS:
    for _name in (_cmd.name, *_cmd.aliases):
        assert _name not in BY_NAME, f"command {_name} declared twice"
        BY_NAME[_name] = _cmd


def _help(s: Session, a: argparse.Namespace) -> bool:
    if a.command:
        key = " ".join(a.command)
        if key in ("dup", "duplication"):
            s.say(*(f"  {c.usage()}" for c in COMMANDS if c.name.startswith("dup ")))
            return True
        cmd = BY_NAME.get(key)
        if cmd is None:
            s.say(_unknown(key))
            return False
        s.say(f"USAGE: {cmd.usage()}", "", f"  {cmd.help}")
        if cmd.aliases:
            s.say(f"  also: {', '.join(cmd.aliases)}")
        if cmd.opts:
            s.say("", "options:")
            for o in cmd.opts:
                names = ", ".join(f for f in (o.short, o.long) if f)
                shown = f"{names} {o.metavar}" if o.metavar else names
                text = o.help
                if o.metavar and o.default is not None and "default" not in o.help:
                    default = str(o.default).lower() if isinstance(o.default, bool) else o.default
                    text += f" (default {default})"
                if len(shown) > HELP_COLUMN - 3:
                    s.say(f"  {shown}", f"  {'':<{HELP_COLUMN}} {text}")
                else:
                    s.say(f"  {shown:<{HELP_COLUMN}} {text}")
        if cmd.details:
            s.say("", f"  {cmd.details}")
        if cmd.needs_table:
            s.say("", "  needs a table: `use <app_name>` first")
        return True
    for group in (TABLES, DATA, DUP, SHELL):
        s.say(f"{group}:")
        for c in COMMANDS:
            if c.group == group:
                s.say(f"  {c.name:<20} {c.help}")
        s.say("")
    s.say(
        "`help <command>` shows its usage and options. Commands end at `;` or a newline;",
        "keys and values take C escapes (\\x00, \\n, \\\\) and quotes (\"a b\", '' for empty).",
    )
    return True


def _exit(s: Session) -> bool:
    s.stop = True
    return True


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(BY_NAME), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f'ERROR: unknown command "{name}"{hint} (`help` lists the commands)'


class Shell:
    """Runs command lines against a session."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def run_text(self, text: str) -> bool:
        """Run every command of `text`; False if any failed."""
        try:
            commands = split_commands(text)
        except SyntaxProblem as e:
            self.s.say(f"ERROR: {e}")
            return False
        ok = True
        for words in commands:
            if self.s.stop:
                break
            ok = self.run(words) and ok
            self.s.out.flush()
        return ok

    def run(self, words: list[str]) -> bool:
        name, rest = words[0], words[1:]
        if name in ("dup", "duplication"):
            if not rest:
                self.s.say("ERROR: dup needs a subcommand: list, add, pause, start or remove")
                self.s.say(*(f"USAGE: {c.usage()}" for c in COMMANDS if c.name.startswith("dup ")))
                return False
            name, rest = f"dup {rest[0]}", rest[1:]
        cmd = BY_NAME.get(name)
        if cmd is None:
            self.s.say(_unknown(name))
            return False
        try:
            args = cmd.parse(rest)
            if cmd.needs_table and self.s.app_name is None:
                raise NoTable()
            return bool(cmd.handler(self.s, args))
        except UsageError as e:
            self.s.say(f"ERROR: {e}", f"USAGE: {cmd.usage()}")
        except NoTable:
            self.s.say("No app is using now", "USAGE: use <app_name>")
        except DupkvError as e:  # operating errors, PegasusError included
            self.s.say(f"ERROR: {e}" + _explain(e.code))
        except BadInput as e:
            self.s.say(f"ERROR: {e}")
        except BrokenPipeError:
            raise  # the reader of our output is gone (`| head`): stop, in run_shell
        except Exception as e:  # a bug: say so, keep the shell alive
            traceback.print_exc(file=sys.stderr)
            self.s.say(f"ERROR: unexpected {type(e).__name__}: {e} (this is a dupkv bug)")
        return False

    def repl(self) -> int:
        """Read commands from stdin until exit or end of input. On a terminal: prompt,
        line editing and history; from a pipe, the exit status tells if any command failed."""
        tty = sys.stdin.isatty()
        history = Path(os.path.expanduser(HISTORY_FILE))
        if tty:
            _setup_readline(history)
        failed = False
        while not self.s.stop:
            try:
                line = input(PROMPT)
            except EOFError:
                self.s.say("")
                break
            except KeyboardInterrupt:
                self.s.say("^C")
                continue
            try:
                failed = not self.run_text(line) or failed
            except KeyboardInterrupt:
                self.s.say("interrupted")
        if tty:
            _save_history(history)
        return 1 if failed and not tty else 0


def _explain(code: str) -> str:
    if code == ErrorCode.HANDLER_NOT_FOUND:
        return " (the meta server does not serve this request)"
    if code == ErrorCode.NETWORK_FAILURE:
        return " (is the cluster running? `cc` changes cluster)"
    return ""


def _setup_readline(history: Path) -> None:
    try:
        import readline
    except ImportError:
        return
    names = sorted({n.split()[0] for n in BY_NAME} | {n for n in BY_NAME})

    def complete(text: str, state: int) -> str | None:
        matches = [n + " " for n in names if n.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t;")
    readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)


def _save_history(history: Path) -> None:
    try:
        import readline

        readline.write_history_file(history)
    except (ImportError, OSError):
        pass


def _session(args: argparse.Namespace) -> Session:
    config = Config.load(args.config) if args.config else None
    if args.meta:
        servers = parse_meta_servers(args.meta)
    elif args.cluster:
        if config is None:
            raise BadInput(
                f"-n {args.cluster} needs --config FILE with the cluster in [pegasus.clusters]"
                " (or give --meta host:port)"
            )
        if args.cluster not in config.clusters:
            known = ", ".join(sorted(config.clusters)) or "none"
            raise BadInput(
                f"cluster {args.cluster!r} is not in [pegasus.clusters] of {config.source}"
                f" (known: {known})"
            )
        servers = list(config.clusters[args.cluster])
    else:
        servers = [DEFAULT_META]
    return Session(servers, cluster_name=args.cluster, config=config)


def run_shell(args: argparse.Namespace) -> int:
    """`dupkv shell`: run -e's commands, or read commands from stdin."""
    session = _session(args)
    shell = Shell(session)
    try:
        if args.execute is not None:
            return 0 if shell.run_text(args.execute) else 1
        return shell.repl()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        session.close()
