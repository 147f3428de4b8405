"""The ``otel-correlate`` command.

Example:
    $ otel-correlate demo --sink receiver
    $ otel-correlate settings
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def _cmd_settings(args: argparse.Namespace) -> int:
    from otel_correlate import _settings

    if args.update_readme:
        changed = _settings.update_readme(args.update_readme)
        print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}")
        return 0
    sys.stdout.write(_settings.markdown_table())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from otel_correlate import _demo

    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="otel-correlate-demo-"))
    if args.sink == "receiver":
        sink = _demo.ReceiverSink()
        with sink.receiver:
            report = _demo.run_demo(sink, orders=args.orders, log_dir=log_dir)
    else:
        from otel_correlate import _stack
        from otel_correlate._stack_sink import StackSink

        _stack.up()
        report = _demo.run_demo(
            StackSink.from_running_stack(), orders=args.orders, log_dir=log_dir, timeout=120
        )
    print(report.render())
    print(f"service logs: {log_dir}")
    if args.sink == "stack":
        print("the stack keeps running for you to explore; stop it with `otel-correlate stack down`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``otel-correlate``, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="otel-correlate",
        description="OpenTelemetry with orderId and requestId everywhere: demo, stack and operations.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the demo services, drive traffic and follow one order")
    demo.add_argument(
        "--sink",
        choices=("stack", "receiver"),
        default="stack",
        help="where telemetry goes: the native stack, started if needed (default), or the built-in OTLP receiver",
    )
    demo.add_argument(
        "--orders", type=int, default=20, help="orders the traffic generator creates (default 20)"
    )
    demo.add_argument("--log-dir", help="folder for the services' output (default: a new temporary folder)")
    demo.set_defaults(handler=_cmd_demo)

    settings = commands.add_parser(
        "settings", help="print every OTEL_CORRELATE_* variable as a markdown table"
    )
    settings.add_argument(
        "--update-readme", metavar="README", help="rewrite the table inside this README instead"
    )
    settings.set_defaults(handler=_cmd_settings)

    from otel_correlate import _backup, _dead_letters, _recovery, _stack

    for module in (_stack, _dead_letters, _recovery, _backup):
        module.add_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``otel-correlate``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"otel-correlate {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
