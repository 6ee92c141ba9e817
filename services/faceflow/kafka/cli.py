"""``faceflow topics create | list --prefix PREFIX``: a run's topic set, for scripts and harnesses.

``create`` makes the topics that ``faceflow run`` makes for itself (``PREFIX.frames``,
``.analyses``, ``.faces``, ``.state``, ``.dlq``, with the configs of ``faceflow.topics``) and the
shared gallery ``faceflow.identities.v1`` with its audit topic ``faceflow.identities.audit.v1``, by
the same function (:func:`faceflow.kafka.admin.create_run_topics`). It is idempotent: a topic that
exists with the same partitions, replication factor and configs is reported as ``exists``; one that
differs is a one-line error and is never altered. Then start the services with
``--frames-topic PREFIX.frames`` and so on.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any

BOOTSTRAP_HELP = "broker list (default $FACEFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"


def register(sub: Any) -> None:
    topics = sub.add_parser(
        "topics",
        help="create or list a run's topic set (PREFIX.frames, .analyses, .faces, .state, .dlq)",
        description="The topics of one isolated mesh, as `faceflow run` creates them, for scripts and test "
        "harnesses. Kafka clients connect as FACEFLOW_KAFKA_* say (docs/security.md).",
    )
    actions = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="create PREFIX.frames ... PREFIX.dlq and the shared gallery; idempotent"
    )
    _common(create)
    create.add_argument(
        "--partitions",
        type=int,
        help="partitions of each PREFIX.* topic (default: each topic's own, 6 or 1); the gallery keeps 1",
    )
    create.add_argument(
        "--replication-factor", type=int, default=1, help="replicas of each topic (default 1)"
    )
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="the topics named PREFIX.* and their partitions")
    _common(listing)
    listing.set_defaults(handler=_list)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefix", required=True, help="topic name prefix, e.g. faceflow.run.ci-42")
    p.add_argument("--bootstrap", "--kafka-bootstrap", dest="bootstrap", help=BOOTSTRAP_HELP)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of one line per topic")


def _bootstrap(args: argparse.Namespace) -> str:
    from faceflow.errors import ConfigError  # noqa: PLC0415
    from faceflow.kafka.bootstrap import DEFAULT_BOOTSTRAP, KAFKA_BOOTSTRAP_ENV  # noqa: PLC0415

    bootstrap: str = args.bootstrap or os.environ.get(KAFKA_BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    for part in bootstrap.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--bootstrap: expected host:port[,host:port...], got {bootstrap!r}")
    return bootstrap


def _create(args: argparse.Namespace) -> int:
    from faceflow.errors import ConfigError  # noqa: PLC0415
    from faceflow.kafka import admin  # noqa: PLC0415 - keep `faceflow --help` fast

    bootstrap = _bootstrap(args)
    try:
        states = admin.create_run_topics(
            bootstrap, args.prefix, partitions=args.partitions, replication_factor=args.replication_factor
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.json:
        print(json.dumps([asdict(state) for state in states], indent=2))  # noqa: T201
    else:
        for state in states:
            print(state.describe())  # noqa: T201
    return 0


def _list(args: argparse.Namespace) -> int:
    from faceflow.errors import ConfigError  # noqa: PLC0415
    from faceflow.kafka import admin  # noqa: PLC0415
    from faceflow.topics import run_topics  # noqa: PLC0415

    bootstrap = _bootstrap(args)
    try:
        run_topics(args.prefix)  # the same prefix rule as `create`
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    found = admin.topics_with_prefix(bootstrap, args.prefix)
    if args.json:
        print(json.dumps([{"name": n, "partitions": p} for n, p in found.items()], indent=2))  # noqa: T201
    else:
        for name, partitions in found.items():
            print(f"{name} ({partitions} partitions)")  # noqa: T201
    return 0
