"""The ``faceflow`` command: one entry point for every deployable and for the local runtime.

Each subcommand family registers itself from its own module (``faceflow.runtime.cli`` for
``faceflow dev``, ``faceflow.run.cli`` for ``faceflow run`` and ``faceflow demo``...). Any
:class:`FaceflowError` becomes a clear one-paragraph message and exit status 2, never a bare stack
trace; ``--debug`` shows the trace.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from faceflow import __version__
from faceflow.errors import FaceflowError

Handler = Callable[[argparse.Namespace], int]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """``--log-level``'s type: a level name in any case; anything else is a usage error."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def build_parser() -> argparse.ArgumentParser:
    from faceflow import schema  # noqa: PLC0415
    from faceflow.aggregator import cli as aggregator_cli  # noqa: PLC0415
    from faceflow.analyzer import cli as analyzer_cli  # noqa: PLC0415
    from faceflow.ingest import cli as ingest_cli  # noqa: PLC0415
    from faceflow.kafka import cli as topics_cli  # noqa: PLC0415
    from faceflow.models import build as models_build  # noqa: PLC0415
    from faceflow.run import cli as run_cli  # noqa: PLC0415 - keep `faceflow --help` fast
    from faceflow.run import democlip, watch  # noqa: PLC0415
    from faceflow.runtime import cli as runtime_cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="faceflow",
        description="Streaming face analytics for live video: Kafka + Triton + gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"faceflow {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("FACEFLOW_LOG_LEVEL", "WARNING"),
        type=log_level,
        help="logging level (default: $FACEFLOW_LOG_LEVEL or WARNING)",
    )
    parser.add_argument("--debug", action="store_true", help="show stack traces for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    runtime_cli.register(sub)
    ingest_cli.register(sub)
    analyzer_cli.register(sub)
    aggregator_cli.register(sub)
    models_build.register(sub)
    run_cli.register(sub)
    democlip.register(sub)
    watch.register(sub)
    schema.register(sub)
    topics_cli.register(sub)
    _accept_globals_everywhere(parser)
    return parser


def _accept_globals_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``--log-level`` and ``--debug`` follow any subcommand too (``faceflow dev up --debug``).

    Operators' scripts put them where they read best. The subcommands' copies default to
    ``SUPPRESS``, so a value given before the subcommand is kept unless repeated after it.
    """
    # argparse has no public walk of its subparsers.
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            child.add_argument(
                "--log-level",
                default=argparse.SUPPRESS,
                type=log_level,
                help="logging level (as before the subcommand)",
            )
            child.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,
                help="show stack traces for errors",
            )
            _accept_globals_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if logging.getLogger().level > logging.INFO:
        # kafka-python logs every refused connection at ERROR while a broker starts; our own code
        # reports what matters, so keep its chatter out of the user's terminal unless asked.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    handler: Handler = args.handler
    try:
        return handler(args)
    except FaceflowError as exc:
        if args.debug:
            raise
        print(f"faceflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
