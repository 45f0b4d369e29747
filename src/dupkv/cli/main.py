"""The `dupkv` command: run servers, the shell and the onebox.

dupkv meta --config FILE [--port N]
dupkv replica --config FILE [--port N] [--data-dir DIR]
dupkv shell [--cluster NAME | --meta ADDRS] [--config FILE] [-e "COMMANDS"]
dupkv onebox start|stop|status|clean [--dir DIR]
"""

import argparse
import asyncio
import logging
import signal
import sys

from dupkv import __version__
from dupkv.base.config import Config, ConfigError
from dupkv.base.errors import BadInput


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load_config(path: str, overrides: dict[tuple[str, str], str]) -> Config:
    cfg = Config.load(path, overrides)
    for warning in cfg.warnings:
        logging.getLogger("dupkv.config").warning("%s", warning)
    return cfg


def cmd_meta(args: argparse.Namespace) -> int:
    from dupkv.meta.server import MetaServer

    overrides = {("apps.meta", "ports"): str(args.port)} if args.port else {}
    cfg = _load_config(args.config, overrides)
    cfg.require("replication", "cluster_name")

    async def main() -> None:
        server = MetaServer(cfg, host=args.host)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
        finally:
            await server.stop()

    asyncio.run(main())
    return 0


def cmd_replica(args: argparse.Namespace) -> int:
    from dupkv.replica.server import ReplicaServer

    overrides = {("apps.replica", "ports"): str(args.port)} if args.port else {}
    cfg = _load_config(args.config, overrides)
    cfg.require("replication", "cluster_name")

    async def main() -> None:
        server = ReplicaServer(cfg, host=args.host, data_dir=args.data_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        await server.run()

    asyncio.run(main())
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from dupkv.cli.shell import run_shell

    return run_shell(args)


def cmd_onebox(args: argparse.Namespace) -> int:
    from dupkv.cli.onebox import run_onebox

    return run_onebox(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="dupkv",
        description="dupkv: Pegasus-compatible KV store with cross-datacenter duplication",
    )
    ap.add_argument("--version", action="version", version=f"dupkv {__version__}")
    ap.add_argument("--log-level", default="info", help="debug, info, warning or error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("meta", help="run a meta server")
    p.add_argument("--config", required=True, help="INI config file")
    p.add_argument("--port", type=int, help="override [apps.meta] ports")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.set_defaults(func=cmd_meta)

    p = sub.add_parser("replica", help="run a replica server")
    p.add_argument("--config", required=True, help="INI config file")
    p.add_argument("--port", type=int, help="override [apps.replica] ports")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--data-dir", help="override [replication] data_dirs")
    p.set_defaults(func=cmd_replica)

    p = sub.add_parser("shell", help="interactive shell (or one-shot with -e)")
    p.add_argument("--cluster", "-n", help="cluster name from [pegasus.clusters] of --config")
    p.add_argument("--meta", help="meta servers, host:port[,host:port]")
    p.add_argument("--config", help="INI config with [pegasus.clusters] (for -n and dup add)")
    p.add_argument(
        "-e", dest="execute", help="run these commands (';' or newline separated) and exit"
    )
    p.set_defaults(func=cmd_shell)

    p = sub.add_parser("onebox", help="two clusters on this machine: start|stop|status|clean")
    p.add_argument("action", choices=["start", "stop", "status", "clean"])
    p.add_argument(
        "--dir", default="onebox", help="folder for configs, data and logs (default ./onebox)"
    )
    p.add_argument(
        "--base-port",
        default=None,
        help="the first cluster's meta port (default 34601); every other port moves with it",
    )
    p.set_defaults(func=cmd_onebox)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"dupkv: bad configuration: {e}", file=sys.stderr)
        return 2
    except BadInput as e:
        print(f"dupkv: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
