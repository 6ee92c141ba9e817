"""``faceflow watch``: a live terminal view of face events over gRPC (``Aggregator.Subscribe``).

In a terminal it redraws a table per stream (one row per track seen recently: identity and name,
last frame, quality, fused age and gender); with ``--lines``, or when the output is not a terminal,
it prints one line per event. The filters are Subscribe's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict
from typing import Any

AGGREGATOR_URL_ENV = "FACEFLOW_AGGREGATOR_URL"
MAX_ROWS = 40


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="a live terminal view of face events (gRPC Subscribe, with its filters)")
    p.add_argument(
        "--aggregator",
        default=os.environ.get(AGGREGATOR_URL_ENV, "127.0.0.1:50053"),
        help=f"an aggregator's gRPC host:port (default ${AGGREGATOR_URL_ENV} or 127.0.0.1:50053)",
    )
    p.add_argument("--stream", action="append", default=[], help="only this stream (repeatable)")
    p.add_argument("--identity", action="append", default=[], help="only this identity id (repeatable)")
    p.add_argument("--name", action="append", default=[], help="only this identity name (repeatable)")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        choices=[
            "observation",
            "track_started",
            "track_lost",
            "track_ended",
            "identity_resolved",
            "stream_ended",
        ],
        help="only this event type (repeatable)",
    )
    p.add_argument(
        "--min-quality", type=float, default=0.0, help="only observations of at least this quality"
    )
    p.add_argument(
        "--from", dest="start", default="now", help="now (default), earliest, or offsets P:O[,P:O...]"
    )
    p.add_argument("--lines", action="store_true", help="one line per event instead of a table")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(handler=run)


def _request(args: argparse.Namespace) -> Any:
    from faceflow.errors import ConfigError  # noqa: PLC0415
    from faceflow.v1 import aggregator_pb2, face_event_pb2  # noqa: PLC0415

    types = [face_event_pb2.FaceEventType.Value(f"FACE_EVENT_TYPE_{t.upper()}") for t in args.type]
    start = aggregator_pb2.StartPosition(latest=True)
    if args.start == "earliest":
        start = aggregator_pb2.StartPosition(earliest=True)
    elif args.start != "now":
        try:
            pairs = dict((int(p), int(o)) for p, o in (item.split(":") for item in args.start.split(",")))
        except ValueError:
            raise ConfigError(f"--from: expected now, earliest or P:O[,P:O...], got {args.start!r}") from None
        start = aggregator_pb2.StartPosition(offsets=aggregator_pb2.PartitionOffsets(offsets=pairs))
    return aggregator_pb2.SubscribeRequest(
        stream_ids=args.stream,
        types=types,
        identity_ids=args.identity,
        identity_names=args.name,
        min_quality=args.min_quality,
        start=start,
    )


def _line(event: Any) -> str:
    from faceflow.run.events_json import event_type_name  # noqa: PLC0415

    who = event.identity_name or event.identity_id or "-"
    box = event.box
    where = f"box {box.x1:.0f},{box.y1:.0f},{box.x2:.0f},{box.y2:.0f}" if event.HasField("box") else ""
    quality = f"q {event.quality:.2f}" if event.quality else ""
    kind = event_type_name(event.type)
    line = f"{kind:18} {event.stream_id} #{event.seq} {event.track_id or '':5} {who} {where} {quality}"
    return line.rstrip()


class _Table:
    def __init__(self) -> None:
        self.rows: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        self.events = 0
        self.gaps = 0
        self.started = time.monotonic()

    def add(self, event: Any) -> None:
        self.events += 1
        if not event.track_id:
            return
        key = (event.stream_id, event.track_id)
        row = self.rows.pop(key, {"state": ""})
        fused = event.fused
        row.update(
            stream=event.stream_id,
            track=event.track_id,
            who=event.identity_name or (event.identity_id[:14] if event.identity_id else "-"),
            seq=str(event.seq),
            quality=f"{event.quality:.2f}" if event.quality else row.get("quality", ""),
            age=fused.age.top_label or row.get("age", ""),
            gender=fused.gender.top_label or row.get("gender", ""),
        )
        name = event.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[event.type].name
        if "ENDED" in name or "LOST" in name:
            row["state"] = name.removeprefix("FACE_EVENT_TYPE_TRACK_").lower()
        elif "OBSERVATION" in name:
            row["state"] = "live"
        self.rows[key] = row
        while len(self.rows) > MAX_ROWS:
            self.rows.popitem(last=False)

    def render(self) -> str:
        rate = self.events / max(1e-6, time.monotonic() - self.started)
        head = f"faceflow watch: {self.events} events ({rate:.1f}/s), {self.gaps} dropped   (Ctrl-C to quit)"
        cols = ("stream", "track", "who", "state", "seq", "quality", "age", "gender")
        widths = (14, 6, 18, 6, 8, 7, 6, 7)
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
        for row in reversed(self.rows.values()):
            lines.append(
                "  ".join(str(row.get(c, ""))[:w].ljust(w) for c, w in zip(cols, widths, strict=True))
            )
        return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import grpc  # noqa: PLC0415

    from faceflow.errors import FaceflowError  # noqa: PLC0415
    from faceflow.service.security import channel_for  # noqa: PLC0415
    from faceflow.v1 import aggregator_pb2_grpc  # noqa: PLC0415

    table_mode = sys.stdout.isatty() and not args.lines
    table = _Table()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    last_draw = 0.0
    with channel_for(args.aggregator) as channel:
        call = aggregator_pb2_grpc.AggregatorStub(channel).Subscribe(
            _request(args), timeout=args.duration if args.duration else None
        )
        try:
            for item in call:
                if item.HasField("gap"):
                    table.gaps += item.gap.dropped
                    if not table_mode:
                        print(f"-- {item.gap.dropped} events dropped (this reader was too slow)", flush=True)  # noqa: T201
                    continue
                if table_mode:
                    table.add(item.event)
                    if time.monotonic() - last_draw > 0.5:
                        print("\x1b[H\x1b[J" + table.render(), flush=True)  # noqa: T201
                        last_draw = time.monotonic()
                else:
                    print(_line(item.event), flush=True)  # noqa: T201
                if deadline is not None and time.monotonic() > deadline:
                    break
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return 0
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise FaceflowError(
                    f"watch: no aggregator answers at {args.aggregator}: is it running?"
                ) from None
            raise FaceflowError(f"watch: {exc.code().name}: {exc.details()}") from None
        except KeyboardInterrupt:
            call.cancel()
    return 0
