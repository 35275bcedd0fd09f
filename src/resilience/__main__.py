"""The `resilience` command (also `python -m resilience`).

Subcommands are implemented in the modules they belong to and imported only when used, so
`resilience demo` does not load the config machinery and vice versa.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DEMO_ACTS = ("retry", "breaker", "fallback", "failover", "queue", "crdt", "config", "migrate",
             "metrics")  # fmt: skip
"""The demo's acts, in order (`resilience demo ACT` runs one); resilience.demo checks this."""


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="resilience",
        description="Resilience primitives: the demo, configuration and presets, migration of "
        "legacy settings and code, soak tests, alert rules and dashboards.",
    )
    parser.add_argument(
        "--version", action="version", version=f"resilience-primitives {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def sub_parser(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
    ) -> argparse.ArgumentParser:
        # the one-line help is also the subcommand's own --help description
        return parent.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")

    demo = sub_parser(commands, "demo", "show the primitives working against a flaky local service")
    demo.add_argument(
        "act",
        nargs="?",
        default=None,
        choices=DEMO_ACTS,
        metavar="ACT",
        help=f"run one act: {', '.join(DEMO_ACTS)} (default: all of them)",
    )
    demo.add_argument("--fast", action="store_true", help="shorter phases (for tests)")
    demo.add_argument("--plain", action="store_true", help="no live view; plain text lines")

    config = sub_parser(commands, "config", "show, validate or explain the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    discovered = "config file (default: $RESILIENCE_CONFIG, ./resilience.toml, ./pyproject.toml)"
    show = sub_parser(config_sub, "show", "print the effective configuration")
    show.add_argument(
        "--operation", "-o", default=None, help="only this operation (default: all of them)"
    )
    show.add_argument("--file", "-f", default=None, help=discovered)
    validate = sub_parser(
        config_sub,
        "validate",
        "validate a config file (default: the discovered one) and the environment",
    )
    validate.add_argument(
        "file",
        nargs="?",
        default=None,
        help=discovered,
    )
    validate.add_argument(
        "--file", "-f", dest="file_option", metavar="FILE", default=None, help="the same"
    )
    explain = sub_parser(config_sub, "explain", "where each value of an operation came from")
    explain.add_argument("operation", help="operation name (declared or not)")
    explain.add_argument("--file", "-f", default=None, help=discovered)

    sub_parser(commands, "presets", "list the built-in presets")

    migrate = sub_parser(commands, "migrate", "convert legacy resilience settings to a config")
    migrate.add_argument(
        "legacy_file",
        nargs="+",
        help="legacy settings (.yml, .properties, .json, .env; overlays after their base) or "
        "Python code (.py files or a directory)",
    )
    migrate.add_argument(
        "--format",
        "-f",
        default="auto",
        help="auto, resilience4j, hystrix, polly, pybreaker, tenacity, circuitbreaker, env "
        "or python",
    )
    migrate.add_argument("--profile", default=None, help="Spring profile(s) to read")
    migrate.add_argument(
        "--rewrite", action="store_true", help="Python: print a diff using @rs.resilient"
    )
    migrate.add_argument("--write", action="store_true", help="with --rewrite: write the files")
    migrate.add_argument("--output", "-o", default=None, help="write the TOML to this file")
    migrate.add_argument(
        "--check", action="store_true", help="print the report; exit 1 unless all mapped exactly"
    )
    migrate.add_argument("--name", default=None, help="operation name for formats with none")
    migrate.add_argument("--preset", default=None, help="the preset operations are written over")
    migrate.add_argument(
        "--unset",
        default="preset",
        choices=("preset", "off"),
        help="policies the legacy file did not configure: from the preset, or off",
    )

    soak = sub_parser(commands, "soak", "run a faulty workload for a while and check for leaks")
    soak.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    soak.add_argument("--workers", type=int, default=4, help="threads, 1 to 256 (default 4)")
    soak.add_argument(
        "--error-rate", type=float, default=0.2, help="share of calls that fail (default 0.2)"
    )
    soak.add_argument(
        "--latency", type=float, default=None, help="seconds of injected latency (default none)"
    )
    soak.add_argument(
        "--latency-rate", type=float, default=0.0, help="share of calls delayed (default 0)"
    )
    soak.add_argument("--seed", type=int, default=0, help="fault seed (default 0)")
    soak.add_argument(
        "--memory-limit",
        type=int,
        default=1_000_000,
        help="bytes of memory growth tolerated (default 1000000)",
    )
    fleet = soak.add_argument_group(
        "fleet", "with --processes N > 1 or --store: N worker processes share a store"
    )
    fleet.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    fleet.add_argument(
        "--store",
        default=None,
        help="sqlite[:PATH] (a file; locked on schedule) or redis (a redis-server started "
        "and restarted here) or redis://HOST:PORT/DB (an external one, never killed)",
    )
    fleet.add_argument("--outages", type=int, default=2, help="backend outages (default 2)")
    fleet.add_argument("--store-restarts", type=int, default=1, help="(default 1)")
    fleet.add_argument("--worker-kills", type=int, default=1, help="SIGKILLs (default 1)")
    fleet.add_argument("--max-rss-growth", type=float, default=0.05, help="fraction (default 0.05)")
    fleet.add_argument("--converge-within", type=float, default=2.0, help="seconds (default 2)")

    from ._observability import add_arguments as observability_arguments

    observability_arguments(
        sub_parser(
            commands, "observability", "write Prometheus alerting rules and/or a Grafana dashboard"
        )
    )

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "file_option", None) is not None:  # config validate --file FILE
        if args.file is not None:
            parser.error("config validate: give the file once (FILE or --file FILE)")
        args.file = args.file_option
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: the command's own cleanup ran (finally blocks)
        print(f"resilience {args.command}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(fast=args.fast, plain=args.plain, act=args.act)
    if args.command in ("config", "presets"):
        from .config._cli import run as run_config_command

        return run_config_command(args)
    if args.command == "soak":
        from .chaos import cli as run_soak_command

        return run_soak_command(args)
    if args.command == "migrate":
        from .migrate import cli as run_migrate_command

        return run_migrate_command(args)
    if args.command == "observability":
        from ._observability import cli as run_observability_command

        return run_observability_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
