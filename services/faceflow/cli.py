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


def build_parser() -> argparse.ArgumentParser:
    from faceflow.aggregator import cli as aggregator_cli  # noqa: PLC0415
    from faceflow.analyzer import cli as analyzer_cli  # noqa: PLC0415
    from faceflow.ingest import cli as ingest_cli  # noqa: PLC0415
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
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
