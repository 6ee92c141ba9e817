"""``faceflow run SOURCE... --out DIR`` (the main job) and ``faceflow demo`` (it, on the demo clip).

``faceflow demo`` generates the demo clip (three real people from photos that scikit-image and
matplotlib ship, moving, crossing, occluding each other, leaving and returning, with ground truth),
enrolls one of them, runs the whole mesh on it into ``out/demo`` and prints what it found: tracks,
identities (named and anonymous), IDF1 against the ground truth, throughput, latency percentiles,
and where to look.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

SCHEDULES = ("adaptive", "all")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fps", type=float, default=5.0, help="frames per second to sample, by timestamp (default 5)"
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="adaptive",
        help="adaptive (default): analyze a face only when it pays; all: every face of every frame",
    )
    p.add_argument("--blur", action="store_true", help="blur faces in the annotated video")
    p.add_argument(
        "--parsing", action="store_true", help="overlay the face-parsing mask in the annotated video"
    )
    p.add_argument(
        "--embeddings", action="store_true", help="include embeddings in faces.jsonl (off: privacy)"
    )
    p.add_argument("--parsing-masks", action="store_true", help="include full parsing masks in faces.jsonl")
    p.add_argument("--no-video", action="store_true", help="skip the annotated videos")
    p.add_argument("--keep-runtime", action="store_true", help="leave Kafka and Triton running afterwards")
    p.add_argument("--keep-topics", action="store_true", help="keep the run's topics (for replay)")
    p.add_argument("--trace-file", type=Path, help="write every span of the run to this JSON-lines file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="the main job: run the whole mesh on video files, folders or URLs and write the results",
        description="Start what is missing (Kafka, Triton, the three services), feed the sources (files to "
        "their end, live URLs until --duration or Ctrl-C) and write faces.jsonl, an annotated video per "
        "stream, report.html and summary.json into --out.",
    )
    run.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="[ID=]FILE, FOLDER or URL (rtsp://, http(s)://)"
    )
    run.add_argument("--out", type=Path, required=True, help="output folder")
    run.add_argument(
        "--enroll", action="append", default=[], metavar="NAME=IMAGE", help="enroll before the run"
    )
    run.add_argument("--duration", type=float, help="stop after this many seconds (live sources)")
    run.add_argument(
        "--ground-truth",
        action="append",
        default=[],
        metavar="[ID=]FILE",
        help="score stream ID against this ground truth (the demo clip's format); repeat it for several "
        "streams; a bare FILE when there is one stream. A video's <name>.ground_truth.json beside it is used "
        "when none is given",
    )
    _common(run)
    run.set_defaults(handler=_run)

    demo = sub.add_parser(
        "demo", help="the main job on the generated demo clip, into out/demo (what `make demo` runs)"
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    demo.add_argument("--clips", type=Path, default=Path("out/clips"), help="where the clip is generated")
    demo.add_argument(
        "--enroll", default="astronaut", help="which of the clip's people to enroll (default astronaut)"
    )
    _common(demo)
    demo.set_defaults(handler=_demo)


def _options(
    args: argparse.Namespace, sources: tuple[Any, ...], enroll: tuple[tuple[str, Path], ...], **extra: Any
) -> Any:
    from faceflow.run.orchestrate import RunOptions  # noqa: PLC0415 - fast --help

    return RunOptions(
        sources=sources,
        out_dir=args.out,
        enroll=enroll,
        fps=args.fps,
        schedule=args.schedule,
        blur=args.blur,
        parsing_overlay=args.parsing,
        include_embeddings=args.embeddings,
        include_parsing_masks=args.parsing_masks,
        video=not args.no_video,
        keep_topics=args.keep_topics,
        keep_runtime=args.keep_runtime,
        progress=not args.quiet,
        trace_file=args.trace_file,
        **extra,
    )


def _parse_enroll(values: list[str]) -> tuple[tuple[str, Path], ...]:
    from faceflow.run.orchestrate import RunError  # noqa: PLC0415

    out = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path:
            raise RunError(f"--enroll: expected NAME=IMAGE, got {value!r}")
        if not Path(path).is_file():
            raise RunError(f"--enroll {value}: no such file")
        out.append((name.strip(), Path(path)))
    return tuple(out)


def _quiet_logs() -> None:
    if logging.getLogger().level > logging.INFO:
        for name in ("kafka", "faceflow"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _run(args: argparse.Namespace) -> int:
    from faceflow.run.orchestrate import Run, RunError, assign_ground_truths, parse_sources  # noqa: PLC0415

    if args.fps < 0:
        raise RunError(f"--fps: expected a number >= 0, got {args.fps}")
    _quiet_logs()
    sources = assign_ground_truths(parse_sources(args.sources, fps=args.fps), args.ground_truth)
    Run(_options(args, sources, _parse_enroll(args.enroll), duration_s=args.duration)).execute()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from faceflow.run.democlip import DEMO, generate_clip  # noqa: PLC0415
    from faceflow.run.orchestrate import Run, RunError, parse_sources  # noqa: PLC0415

    _quiet_logs()
    print(f"== generating the demo clip into {args.clips} (first run only)")  # noqa: T201
    clip = generate_clip(DEMO, args.clips, progress=not args.quiet)
    if args.enroll not in clip.enroll:
        raise RunError(f"--enroll: expected one of {sorted(clip.enroll)}, got {args.enroll!r}")
    sources = parse_sources([f"demo={clip.video}"], fps=args.fps, ground_truth=clip.ground_truth)
    photo = clip.enroll[args.enroll]
    print(  # noqa: T201
        f"   {clip.video} ({clip.frame_count} frames at {clip.fps:g} fps; "
        f"ground truth {clip.ground_truth.name}); enrolling {args.enroll} from {photo.name}"
    )
    Run(_options(args, sources, ((args.enroll, photo),))).execute()
    print(  # noqa: T201
        f"\nlook at: {args.out / 'report.html'} (open it in a browser), {args.out / 'annotated-demo.mp4'}, "
        f"{args.out / 'faces.jsonl'}, {args.out / 'summary.json'}"
    )
    return 0
