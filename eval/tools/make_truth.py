"""Ground truth for the evaluation clips: detector proposals, labelled by a person, checked by eye.

Semi-automatic, in two passes (provenance, not run by tests):

1. ``make_truth.py draft``: decodes every frame of every clip in ../clips (as the mesh will), runs
   CenterFace at a low threshold (0.2, so small faces are proposed too), links the boxes of one
   shot into chains by overlap, and draws contact sheets (``draft/<clip>-<n>.png``) with each
   chain's number on its box, for a person to look at.
2. A person writes ``labels.json``: for every clip, chain -> person (``"man"``, ``"stranger-3"``,
   or ``"-"`` for a false detection), plus boxes to add where the detector missed a face that a
   person can see (``"add": [[frame, person, x1, y1, x2, y2], ...]``).
3. ``make_truth.py write``: writes ``../truth/<clip>.json`` in the ground-truth format of
   ``faceflow.run.democlip_types.GroundTruth`` (the one ``faceflow run --ground-truth`` reads) and
   ``check/<clip>-<n>.png`` sheets with the final labels drawn, to check by eye once more.

An appearance (what a tracker should keep one id for) is one person's continuous presence within
one shot; a person who is back after a cut starts a new appearance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from faceflow.models.centerface import CenterFaceDetector

HERE = Path(__file__).resolve().parent
EVAL = HERE.parent
PER_SHEET = 12


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sheets(clip: str, frames: list[np.ndarray], labelled: list[list[tuple[str, list[float]]]], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    h, w = frames[0].shape[:2]
    for start in range(0, len(frames), PER_SHEET):
        sheet = Image.new("RGB", (w * 4, h * 3))
        for k, i in enumerate(range(start, min(start + PER_SHEET, len(frames)))):
            im = Image.fromarray(frames[i])
            draw = ImageDraw.Draw(im)
            draw.text((4, 4), f"{clip} #{i}", fill=(255, 255, 0))
            for label, box in labelled[i]:
                draw.rectangle(box, outline=(255, 0, 0) if label == "-" else (0, 255, 0))
                draw.text((box[0], box[3] + 1), label, fill=(255, 255, 0))
            sheet.paste(im, ((k % 4) * w, (k // 4) * h))
        sheet.save(folder / f"{clip}-{start // PER_SHEET}.png")


def draft() -> None:
    segments = json.loads((HERE / "segments.json").read_text())
    detector = CenterFaceDetector(threshold=0.2)
    out: dict[str, object] = {}
    for clip, seg in segments.items():
        frames = decode(EVAL / "clips" / f"{clip}.mp4")
        shots = [s for s, _, _ in seg["frames"]]
        chains: list[dict[str, object]] = []
        live: list[tuple[int, np.ndarray]] = []  # (chain, last box)
        per_frame: list[list[list[float]]] = []
        labelled: list[list[tuple[str, list[float]]]] = []
        for i, rgb in enumerate(frames):
            if i and shots[i] != shots[i - 1]:
                live = []
            det = detector.detect(rgb)
            boxes = [[round(float(v), 1) for v in b] for b in det.boxes]
            per_frame.append(boxes)
            row = []
            taken: set[int] = set()
            nxt = []
            for b, s in zip(det.boxes, det.scores, strict=True):
                best, best_iou = -1, 0.2
                for c, last in live:
                    if c not in taken and _iou(b, last) > best_iou:
                        best, best_iou = c, _iou(b, last)
                if best < 0:
                    best = len(chains)
                    chains.append({"shot": shots[i], "frames": []})
                taken.add(best)
                chains[best]["frames"].append([i, [round(float(v), 1) for v in b], round(float(s), 3)])  # type: ignore[attr-defined]
                nxt.append((best, b))
                row.append((str(best), [float(v) for v in b]))
            live = nxt + [(c, last) for c, last in live if c not in taken]
            labelled.append(row)
        out[clip] = {"frames": len(frames), "shape": list(frames[0].shape), "chains": chains}
        sheets(clip, frames, labelled, HERE / "draft")
        print(f"{clip}: {len(frames)} frames, {len(chains)} chains")
    (HERE / "draft.json").write_text(json.dumps(out) + "\n")


def write() -> None:
    segments = json.loads((HERE / "segments.json").read_text())
    drafts = json.loads((HERE / "draft.json").read_text())
    labels = json.loads((HERE / "labels.json").read_text())
    enrolled = set(json.loads((EVAL / "manifest.json").read_text())["enroll"])
    for clip, seg in segments.items():
        fps = seg["fps"]
        shots = [s for s, _, _ in seg["frames"]]
        n = drafts[clip]["frames"]
        h, w = drafts[clip]["shape"][:2]
        spec = labels[clip]
        faces: list[list[tuple[str, list[float]]]] = [[] for _ in range(n)]
        for c, chain in enumerate(drafts[clip]["chains"]):
            person = spec["chains"].get(str(c))
            if person is None:
                raise SystemExit(f"{clip}: chain {c} has no label")
            if person == "-":
                continue
            for i, box, _ in chain["frames"]:
                faces[i].append((person, box))
        for i, person, *box in spec.get("add", []):
            faces[i].append((person, [float(v) for v in box]))
        # appearances: a person's presence within one shot, new after a cut or a gap
        appearance: dict[str, int] = {}
        last_seen: dict[str, int] = {}
        frames_json = []
        people: set[str] = set()
        for i in range(n):
            row = []
            for person, box in faces[i]:
                prev = last_seen.get(person)
                if prev is None or prev != i - 1 or shots[prev] != shots[i]:
                    appearance[person] = appearance.get(person, 0) + 1
                last_seen[person] = i
                people.add(person)
                x1, y1, x2, y2 = (min(max(v, 0.0), lim) for v, lim in zip(box, (w, h, w, h), strict=True))
                row.append(
                    {
                        "person": person,
                        "instance": person,
                        "appearance": f"{person}/{appearance[person]}",
                        "box": [x1, y1, x2, y2],
                        "visible": 1.0,
                        "occluded": False,
                    }
                )
            names = [f["person"] for f in row]
            if len(set(names)) != len(names):
                raise SystemExit(f"{clip} frame {i}: a person twice: {names}")
            frames_json.append({"index": i, "pts": round(i / fps, 6), "faces": row})
        doc = {
            "version": 1,
            "clip": f"{clip}.mp4",
            "width": w,
            "height": h,
            "fps": fps,
            "frame_count": n,
            "people": {p: {"photo": "enrolled" if p in enrolled else "", "enroll": ""} for p in sorted(people)},
            "instances": {p: {"person": p} for p in sorted(people)},
            "frames": frames_json,
        }
        (EVAL / "truth" / f"{clip}.json").write_text(json.dumps(doc, indent=1) + "\n")
        frames = decode(EVAL / "clips" / f"{clip}.mp4")
        labelled = [[(f["appearance"], f["box"]) for f in fr["faces"]] for fr in frames_json]
        sheets(clip, frames, labelled, HERE / "check")
        print(f"{clip}: {sum(len(r) for r in faces)} faces of {sorted(people)}")


if __name__ == "__main__":
    {"draft": draft, "write": write}[sys.argv[1]]()
