"""``annotated.mp4``: one stream's frames with its face events drawn on them, H.264 via PyAV.

Two layers:

* :func:`annotate_frame` (Pillow + numpy, no codec): draws one frame's observations, the JSON
  objects of :mod:`faceflow.run.events_json`. Per observation: the box in a colour stable per track
  (:func:`track_colour`, a CRC-32 palette, the same in every run), a label ``t3 · Alice 0.31`` /
  ``t3 · anon-1a2b…``; for an analyzed observation the 68 landmarks and the head-pose axes; for an
  observation that was *not* analyzed (face-aware scheduling: its results come from
  ``results_seq``) a dashed box. Optional parsing overlay, optional blur, optional corner note.
* :class:`AnnotatedVideoWriter` / :func:`render_annotated`: decode each JPEG, annotate, encode
  H.264 (libx264, yuv420p, constant frame rate, one output frame per input frame). Odd frame sizes
  are padded by one black row / column (yuv420p needs even dimensions).

Head pose (radians): pitch about x, yaw about y, roll about z, drawn with the convention of
Hopenet / 6DRepNet (300W-LP): image x right, y down; at zero pose the red axis points image-right,
the green one down (towards the chin) and the blue one (the nose direction) straight at the
camera. Positive yaw turns the nose to image-left, positive pitch raises it, positive roll turns
the face clockwise on screen. The projection is orthographic (see :func:`pose_axes`).

Blur (DESIGN.md "Privacy defaults"): by the parsing mask (every class but background, warped
from the 224x224 crop onto ``crop_box`` and dilated a little) when the face model has trained
weights; by the box grown by :data:`BLUR_BOX_GROW` when its weights are random (a random mask
hides nothing), when the observation carries no mask, or when the mask covers less than
:data:`MIN_MASK_SHARE` of the box. An observation that was not analyzed reuses its track's last
mask, moved with the box. Random means: ``random_init_note`` was given, or any model listed in
the observation's ``models`` has ``random_init``.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from faceflow.errors import FaceflowError
from faceflow.models.contract import PARSING_CLASSES

logger = logging.getLogger(__name__)

__all__ = [
    "BLUR_BOX_GROW",
    "MIN_MASK_SHARE",
    "PALETTE",
    "PARSING_COLOURS",
    "RANDOM_INIT_NOTE",
    "AnnotatedVideoWriter",
    "VideoError",
    "VideoOptions",
    "annotate_frame",
    "palette_colour",
    "pose_axes",
    "render_annotated",
    "track_colour",
    "track_label",
    "warp_mask",
]

RGB = tuple[int, int, int]
Image8 = npt.NDArray[np.uint8]

#: The corner note the orchestration passes when the face model's weights are random.
RANDOM_INIT_NOTE: Final[str] = "face model: RANDOM-INIT weights — attributes/landmarks meaningless"

#: Distinct, saturated colours (Tableau 10 and friends); a track's colour indexes this by CRC-32.
PALETTE: Final[tuple[RGB, ...]] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (23, 190, 207),
    (227, 119, 194),
    (188, 189, 34),
    (0, 200, 120),
    (255, 80, 160),
    (90, 140, 255),
    (255, 200, 0),
)

#: Overlay colour of each parsing class, by class id (None: not drawn). One entry per
#: ``PARSING_CLASSES`` entry, in that order: background, skin, r_brow, l_brow, r_eye, l_eye, nose,
#: upper_lip, inner_mouth, lower_lip, hair.
PARSING_COLOURS: Final[tuple[RGB | None, ...]] = (
    None,
    (255, 204, 153),
    (153, 76, 0),
    (204, 102, 0),
    (0, 153, 255),
    (0, 204, 255),
    (255, 255, 0),
    (255, 0, 102),
    (128, 0, 64),
    (255, 51, 153),
    (102, 51, 153),
)
if len(PARSING_COLOURS) != len(PARSING_CLASSES):  # pragma: no cover - guards an edit of the contract
    raise ImportError(f"expected {len(PARSING_CLASSES)} parsing colours, got {len(PARSING_COLOURS)}")

#: Blur by box: the box grows by this fraction of its width / height on every side.
BLUR_BOX_GROW: Final[float] = 0.1
#: Blur by mask only when the mask's face pixels cover at least this share of the box.
MIN_MASK_SHARE: Final[float] = 0.25
_OVERLAY_ALPHA: Final[float] = 0.45


def _overlay_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per parsing class: its overlay colour and its alpha (0 for classes drawn in no colour)."""
    lut = np.zeros((len(PARSING_COLOURS), 3), np.float32)
    alpha = np.zeros(len(PARSING_COLOURS), np.float32)
    for i, colour in enumerate(PARSING_COLOURS):
        if colour is not None:
            lut[i], alpha[i] = colour, _OVERLAY_ALPHA
    return lut, alpha


_OVERLAY_LUT, _OVERLAY_ALPHAS = _overlay_tables()
_UNANALYZED_DASH: Final[int] = 6
_NOSE_TIP: Final[int] = 30  # iBUG 68 index of the nose tip
_NUM_LANDMARKS: Final[int] = 68
_FONT_FILE: Final[str] = "DejaVuSans.ttf"  # found by Pillow in the system font folders


class VideoError(FaceflowError, ValueError):
    """Invalid input to the annotated-video writer (options, frame order, events)."""


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """How :class:`AnnotatedVideoWriter` draws and encodes.

    Attributes:
        fps: output frame rate (constant); every input frame becomes one output frame.
        blur: blur faces (see the module docstring for mask vs box).
        parsing_overlay: paint the parsing classes semi-transparently over analyzed faces.
        random_init_note: a corner note on every frame (the face model's weights are random);
            also makes blur use boxes.
        crf: libx264 constant rate factor, 0 (lossless) .. 51.
        preset: libx264 preset.
    """

    fps: float
    blur: bool = False
    parsing_overlay: bool = False
    random_init_note: str | None = None
    crf: int = 20
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)):
            raise VideoError(f"fps: expected a finite number > 0, got {type(self.fps).__name__}")
        if not math.isfinite(self.fps) or not 0 < self.fps <= 1000:
            raise VideoError(f"fps: expected a finite number in (0, 1000], got {self.fps}")
        for name in ("blur", "parsing_overlay"):
            if not isinstance(getattr(self, name), bool):
                raise VideoError(f"{name}: expected a bool, got {type(getattr(self, name)).__name__}")
        if self.random_init_note is not None and not isinstance(self.random_init_note, str):
            raise VideoError(
                f"random_init_note: expected a str or None, got {type(self.random_init_note).__name__}"
            )
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise VideoError(f"crf: expected an int in 0..51, got {self.crf!r}")
        if not isinstance(self.preset, str) or not self.preset:
            raise VideoError(f"preset: expected a libx264 preset name, got {self.preset!r}")

    @property
    def rate(self) -> Fraction:
        """The frame rate as a fraction (29.97 -> 30000/1001)."""
        return Fraction(self.fps).limit_denominator(1001)


# --- Colours and labels ----------------------------------------------------------------------------


def palette_colour(key: str) -> RGB:
    """A colour of :data:`PALETTE` chosen by the CRC-32 of ``key`` (stable across runs and machines)."""
    return PALETTE[zlib.crc32(key.encode("utf-8")) % len(PALETTE)]


def track_colour(stream_id: str, track_id: str) -> RGB:
    """The colour of a track: boxes in the video, rows in the report."""
    return palette_colour(f"{stream_id}/{track_id}")


def short_track(track_id: str) -> str:
    """``"3"`` -> ``"t3"``; an id that does not start with a digit stays as it is."""
    return f"t{track_id}" if track_id[:1].isdigit() else track_id


def short_identity(identity_id: str, width: int = 9) -> str:
    """``"anon-1a2b3c4d"`` -> ``"anon-1a2b…"``: the first ``width`` characters and an ellipsis."""
    return identity_id if len(identity_id) <= width + 1 else identity_id[:width] + "…"


def track_label(observation: Mapping[str, Any]) -> str:
    """``t3 · Alice 0.31`` (named: name and embedding distance), ``t3 · anon-1a2b…``, or ``t3``."""
    label = short_track(str(observation.get("track_id") or "?"))
    identity = observation.get("identity")
    if identity:
        if identity.get("name"):
            label += f" · {identity['name']} {float(identity.get('distance') or 0.0):.2f}"
        else:
            label += f" · {short_identity(str(identity['id']))}"
    return label


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when the system has it (wide Unicode coverage for client-given names), else
    Pillow's bundled font (Latin only: other glyphs show as boxes)."""
    try:
        return ImageFont.truetype(_FONT_FILE, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _text_colour(background: RGB) -> RGB:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


# --- Geometry --------------------------------------------------------------------------------------


def pose_axes(pitch: float, yaw: float, roll: float, length: float) -> tuple[tuple[float, float], ...]:
    """The 2-D ends (dx, dy) of the head's x, y, z axes for a pose in radians, image y down.

    Hopenet's drawing convention (see the module docstring): zero pose gives x = (L, 0),
    y = (0, L) (towards the chin), z = (0, 0) (at the camera); positive yaw moves z to image-left,
    positive pitch moves it up, positive roll turns x clockwise.
    """
    p, y, r = pitch, -yaw, roll
    x_axis = (
        length * math.cos(y) * math.cos(r),
        length * (math.cos(p) * math.sin(r) + math.cos(r) * math.sin(p) * math.sin(y)),
    )
    y_axis = (
        -length * math.cos(y) * math.sin(r),
        length * (math.cos(p) * math.cos(r) - math.sin(p) * math.sin(y) * math.sin(r)),
    )
    z_axis = (length * math.sin(y), -length * math.cos(y) * math.sin(p))
    return (x_axis, y_axis, z_axis)


def warp_mask(
    class_ids: npt.NDArray[np.uint8], crop_box: Sequence[float], width: int, height: int
) -> tuple[int, int, npt.NDArray[np.uint8]]:
    """Map a crop's class-id mask onto the frame: ``(x0, y0, region)``, region = ids at frame pixels.

    ``crop_box`` (x1, y1, x2, y2) is in continuous frame coordinates, the crop spans it exactly
    (the face model's crop is not aspect-preserving); frame pixel ``X`` takes the crop pixel under
    its centre, ``floor((X + 0.5 - x1) * w / (x2 - x1))``. The region covers the crop box clipped to
    the ``width`` x ``height`` frame; pixels outside the crop read as class 0 (background).
    """
    if class_ids.ndim != 2 or class_ids.size == 0:
        raise VideoError(f"parsing mask: expected a 2-D class-id array, got shape {class_ids.shape}")
    x1, y1, x2, y2 = (float(v) for v in crop_box)
    if not (x2 > x1 and y2 > y1) or not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise VideoError(f"parsing mask: expected a crop_box with x2 > x1 and y2 > y1, got {list(crop_box)}")
    mh, mw = class_ids.shape
    x0, y0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    xe, ye = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if xe <= x0 or ye <= y0:
        return x0, y0, np.zeros((0, 0), np.uint8)
    cols = np.floor((np.arange(x0, xe) + 0.5 - x1) * mw / (x2 - x1)).astype(np.int64)
    rows = np.floor((np.arange(y0, ye) + 0.5 - y1) * mh / (y2 - y1)).astype(np.int64)
    col_ok, row_ok = (cols >= 0) & (cols < mw), (rows >= 0) & (rows < mh)
    region = class_ids[np.clip(rows, 0, mh - 1)[:, None], np.clip(cols, 0, mw - 1)[None, :]]
    region = np.where(row_ok[:, None] & col_ok[None, :], region, 0).astype(np.uint8)
    return x0, y0, region


def _box(obj: Mapping[str, Any] | None) -> tuple[float, float, float, float] | None:
    if not obj:
        return None
    return (float(obj["x1"]), float(obj["y1"]), float(obj["x2"]), float(obj["y2"]))


def _decode_mask(mask: Mapping[str, Any], where: str) -> tuple[npt.NDArray[np.uint8], tuple[float, ...]]:
    w, h = int(mask["width"]), int(mask["height"])
    data = base64.b64decode(mask["class_ids_base64"], validate=True)
    if len(data) != w * h:
        raise VideoError(f"{where}: expected {w}x{h} = {w * h} class ids, got {len(data)} bytes")
    ids = np.frombuffer(data, np.uint8).reshape(h, w)
    if ids.size and int(ids.max()) >= len(PARSING_CLASSES):
        raise VideoError(f"{where}: expected class ids < {len(PARSING_CLASSES)}, got {int(ids.max())}")
    box = _box(mask["crop_box"])
    if box is None:
        raise VideoError(f"{where}: expected a crop_box, got none")
    return ids, box


@dataclass(frozen=True, slots=True)
class _MaskRef:
    """A track's last parsing mask and the box it was seen with (to move it with later boxes)."""

    ids: npt.NDArray[np.uint8]
    crop_box: tuple[float, ...]
    box: tuple[float, float, float, float]

    def moved_to(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The crop box for ``box``: the same placement relative to the box as when it was analyzed."""
        bx1, by1, bx2, by2 = self.box
        sx = (box[2] - box[0]) / max(bx2 - bx1, 1e-6)
        sy = (box[3] - box[1]) / max(by2 - by1, 1e-6)
        cx1, cy1, cx2, cy2 = self.crop_box
        return (
            box[0] + (cx1 - bx1) * sx,
            box[1] + (cy1 - by1) * sy,
            box[0] + (cx2 - bx1) * sx,
            box[1] + (cy2 - by1) * sy,
        )


# --- Drawing ---------------------------------------------------------------------------------------


def _random_weights(observation: Mapping[str, Any]) -> bool:
    return any(bool(m.get("random_init")) for m in observation.get("models") or ())


def _grown(box: tuple[float, float, float, float], grow: float, width: int, height: int) -> tuple[int, ...]:
    x1, y1, x2, y2 = box
    gw, gh = grow * (x2 - x1), grow * (y2 - y1)
    return (
        max(0, math.floor(x1 - gw)),
        max(0, math.floor(y1 - gh)),
        min(width, math.ceil(x2 + gw)),
        min(height, math.ceil(y2 + gh)),
    )


def _blur_where(rgb: Image8, x0: int, y0: int, keep: npt.NDArray[np.bool_], face_width: float) -> None:
    """Pixelate and blur ``rgb`` in place where ``keep`` (a region at x0, y0) is true."""
    h, w = keep.shape
    if h == 0 or w == 0 or not keep.any():
        return
    patch = Image.fromarray(rgb[y0 : y0 + h, x0 : x0 + w])
    block = max(2, round(face_width / 9))
    small = patch.resize((max(1, w // block), max(1, h // block)), Image.Resampling.BOX)
    blurred = small.resize((w, h), Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(radius=max(1.0, face_width / 14))
    )
    region = rgb[y0 : y0 + h, x0 : x0 + w]
    region[keep] = np.asarray(blurred)[keep]


def _dilate(face: npt.NDArray[np.bool_], pixels: int) -> npt.NDArray[np.bool_]:
    if pixels <= 0 or face.size == 0:
        return face
    img = Image.fromarray(face.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * pixels + 1))
    return np.asarray(img) > 0


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[float, ...], colour: RGB, width: int) -> None:
    x1, y1, x2, y2 = box
    dash = _UNANALYZED_DASH + width
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = math.hypot(bx - ax, by - ay)
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                (ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1),
                fill=colour,
                width=width,
            )


class _FrameAnnotator:
    """Draws observations on frames; remembers each track's last mask for the faces not analyzed."""

    def __init__(self, options: VideoOptions, *, max_tracks: int = 1024) -> None:
        self._options = options
        self._masks: dict[tuple[str, str], _MaskRef] = {}
        self._max_tracks = max_tracks

    def _mask_for(
        self, obs: Mapping[str, Any], box: tuple[float, float, float, float]
    ) -> tuple[npt.NDArray[np.uint8], tuple[float, ...]] | None:
        key = (str(obs.get("stream_id")), str(obs.get("track_id")))
        raw = obs.get("raw") or {}
        mask = raw.get("parsing_mask") if obs.get("analyzed") else None
        if mask:
            ids, crop = _decode_mask(mask, f"seq {obs.get('seq')} track {key[1]}: raw.parsing_mask")
            self._masks.pop(key, None)
            self._masks[key] = _MaskRef(ids, crop, box)
            while len(self._masks) > self._max_tracks:  # bounded: drop the least recently updated track
                self._masks.pop(next(iter(self._masks)))
            return ids, crop
        ref = self._masks.get(key)
        return (ref.ids, ref.moved_to(box)) if ref is not None else None

    def annotate(self, rgb: Image8, observations: Sequence[Mapping[str, Any]]) -> Image8:
        """Return a new annotated copy of ``rgb`` (HxWx3 uint8)."""
        opts = self._options
        out = np.array(rgb, dtype=np.uint8, copy=True)
        height = out.shape[0]
        faces: list[tuple[Mapping[str, Any], tuple[float, float, float, float], Any]] = []
        for obs in observations:
            box = _box(obs.get("box"))
            if box is None:
                continue
            mask = self._mask_for(obs, box) if (opts.blur or opts.parsing_overlay) else None
            faces.append((obs, box, mask))

        if opts.blur:
            for obs, box, mask in faces:
                self._blur_face(out, obs, box, mask)
        if opts.parsing_overlay:
            for *_, mask in faces:
                if mask is not None:
                    self._overlay(out, mask)

        image = Image.fromarray(out)
        draw = ImageDraw.Draw(image)
        scale = max(1.0, height / 360)
        for obs, box, _mask in faces:
            self._draw_face(draw, obs, box, scale)
        if opts.random_init_note:
            self._note(draw, opts.random_init_note, scale)
        return np.asarray(image, dtype=np.uint8).copy()

    def _blur_face(
        self, out: Image8, obs: Mapping[str, Any], box: tuple[float, float, float, float], mask: Any
    ) -> None:
        height, width = out.shape[:2]
        face_w = box[2] - box[0]
        trusted = mask is not None and self._options.random_init_note is None and not _random_weights(obs)
        if trusted:
            x0, y0, region = warp_mask(mask[0], mask[1], width, height)
            face = _dilate(region > 0, max(1, round(face_w / 40)))
            box_area = max(1.0, (box[2] - box[0]) * (box[3] - box[1]))
            if face.sum() >= MIN_MASK_SHARE * box_area:
                _blur_where(out, x0, y0, face, face_w)
                return
            logger.debug(
                "seq %s track %s: mask covers too little, blurring the box",
                obs.get("seq"),
                obs.get("track_id"),
            )
        gx1, gy1, gx2, gy2 = _grown(box, BLUR_BOX_GROW, width, height)
        _blur_where(out, gx1, gy1, np.ones((gy2 - gy1, gx2 - gx1), np.bool_), face_w)

    def _overlay(self, out: Image8, mask: Any) -> None:
        height, width = out.shape[:2]
        x0, y0, region = warp_mask(mask[0], mask[1], width, height)
        if region.size == 0:
            return
        lut, alpha = _OVERLAY_LUT, _OVERLAY_ALPHAS
        h, w = region.shape
        patch = out[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        a = alpha[region][..., None]
        out[y0 : y0 + h, x0 : x0 + w] = np.clip(patch * (1 - a) + lut[region] * a + 0.5, 0, 255).astype(
            np.uint8
        )

    def _draw_face(
        self,
        draw: ImageDraw.ImageDraw,
        obs: Mapping[str, Any],
        box: tuple[float, float, float, float],
        scale: float,
    ) -> None:
        colour = track_colour(str(obs.get("stream_id")), str(obs.get("track_id")))
        line = max(2, round(2 * scale))
        analyzed = bool(obs.get("analyzed"))
        if analyzed:
            draw.rectangle(box, outline=colour, width=line)
        else:
            _dashed_rectangle(draw, box, colour, line)
        raw = obs.get("raw") or {}
        face_w = box[2] - box[0]
        landmarks = raw.get("landmarks68") if analyzed else None
        if landmarks:
            r = max(1.0, min(3.0, face_w / 90))
            for x, y in landmarks:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        pose = raw.get("head_pose") if analyzed else None
        if pose:
            if landmarks and len(landmarks) == _NUM_LANDMARKS:
                cx, cy = landmarks[_NOSE_TIP]
            else:
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            axes = pose_axes(float(pose["pitch"]), float(pose["yaw"]), float(pose["roll"]), 0.45 * face_w)
            for (dx, dy), axis_colour in zip(
                axes, ((230, 30, 30), (30, 200, 30), (40, 90, 255)), strict=True
            ):
                draw.line((cx, cy, cx + dx, cy + dy), fill=axis_colour, width=line)
        label = track_label(obs) + ("" if analyzed else f" · from seq {obs.get('results_seq')}")
        font = _font(max(11, round(12 * scale)))
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = max(2, round(2 * scale))
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = max(0.0, min(box[0] - line / 2, draw.im.size[0] - tw))
        ty = box[1] - th - line / 2 if box[1] - th - line / 2 >= 0 else box[1] + line
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), label, fill=_text_colour(colour), font=font)

    @staticmethod
    def _note(draw: ImageDraw.ImageDraw, note: str, scale: float) -> None:
        """A red band in the bottom-left corner (faces are rarer there), word-wrapped to the frame's width."""
        font = _font(max(11, round(13 * scale)))
        pad = max(3, round(4 * scale))
        width = draw.im.size[0]
        lines: list[str] = []
        for word in note.split():
            if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width - 2 * pad:
                lines[-1] += f" {word}"
            else:
                lines.append(word)
        text = "\n".join(lines)
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
        y0 = max(0, draw.im.size[1] - (bottom - top + 2 * pad))
        draw.rectangle((0, y0, min(width, right - left + 2 * pad), draw.im.size[1]), fill=(190, 0, 0))
        draw.multiline_text((pad - left, y0 + pad - top), text, fill=(255, 255, 255), font=font)


def annotate_frame(
    rgb: Image8,
    observations: Sequence[Mapping[str, Any]],
    *,
    blur: bool = False,
    parsing_overlay: bool = False,
    random_init_note: str | None = None,
) -> Image8:
    """Draw one frame's observations on a copy of ``rgb`` (HxWx3 uint8); no codec involved.

    A non-analyzed observation has no mask of its own here (no track history): blur falls back to
    its box. :class:`AnnotatedVideoWriter` keeps the history across frames.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise VideoError(f"expected an HxWx3 uint8 frame, got {got}")
    options = VideoOptions(
        fps=1.0, blur=blur, parsing_overlay=parsing_overlay, random_init_note=random_init_note
    )
    return _FrameAnnotator(options).annotate(rgb, observations)


# --- Encoding ---------------------------------------------------------------------------------------


class AnnotatedVideoWriter:
    """Annotates and encodes one stream's frames to an H.264 MP4, one output frame per input frame.

    Frames must come in increasing ``seq`` order. The output size is the first frame's, rounded up
    to even (padded black); a later frame of another size is resized to it (logged once). A JPEG
    that does not decode repeats the previous output frame (black if none), logged. Use as a
    context manager or call :meth:`close`, which returns the number of frames written.
    """

    def __init__(
        self,
        out_path: str | Path,
        *,
        fps: float,
        blur: bool = False,
        parsing_overlay: bool = False,
        random_init_note: str | None = None,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        self._options = VideoOptions(
            fps=fps,
            blur=blur,
            parsing_overlay=parsing_overlay,
            random_init_note=random_init_note,
            crf=crf,
            preset=preset,
        )
        self._path = Path(out_path)
        self._annotator = _FrameAnnotator(self._options)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (width, height) of the input frames
        self._last: Image8 | None = None
        self._last_seq: int | None = None
        self._frames = 0
        self._resize_logged = False
        self._closed = False

    @property
    def path(self) -> Path:
        """The MP4 written."""
        return self._path

    def _open(self, width: int, height: int) -> None:
        import av  # noqa: PLC0415 - the codec adapter; drawing does not need it

        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._path), mode="w")
        stream = self._container.add_stream("libx264", rate=self._options.rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self._options.crf), "preset": self._options.preset}
        self._stream = stream
        self._size = (width, height)
        logger.info(
            "writing %s: %dx%d at %s fps (libx264 crf %d, blur=%s, parsing_overlay=%s)",
            self._path,
            stream.width,
            stream.height,
            self._options.rate,
            self._options.crf,
            self._options.blur,
            self._options.parsing_overlay,
        )

    def _decode(self, seq: int, jpeg: bytes) -> Image8 | None:
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                return np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            logger.warning(
                "%s: seq %d: undecodable frame (%s), repeating the previous one", self._path, seq, exc
            )
            return None

    def write(
        self, seq: int, pts_seconds: float, jpeg: bytes, observations: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Annotate one frame with its observations (events of this seq) and encode it."""
        if self._closed:
            raise VideoError(f"{self._path}: expected an open writer, got a closed one")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise VideoError(f"{self._path}: seq: expected an int >= 0, got {seq!r}")
        if self._last_seq is not None and seq <= self._last_seq:
            raise VideoError(
                f"{self._path}: expected frames in increasing seq order, got seq {seq} after {self._last_seq}"
            )
        self._last_seq = seq
        rgb = self._decode(seq, jpeg)
        if rgb is None:
            if self._last is None:
                logger.warning("%s: seq %d: no frame yet to repeat, writing nothing", self._path, seq)
                return
            self._encode(self._last, seq, pts_seconds)
            return
        if self._size is None:
            self._open(rgb.shape[1], rgb.shape[0])
        annotated = self._annotator.annotate(rgb, observations)
        assert self._size is not None
        if (annotated.shape[1], annotated.shape[0]) != self._size:
            if not self._resize_logged:
                logger.warning(
                    "%s: seq %d: frame size %dx%d differs from the first frame's %dx%d; resizing",
                    self._path,
                    seq,
                    annotated.shape[1],
                    annotated.shape[0],
                    *self._size,
                )
                self._resize_logged = True
            annotated = np.asarray(Image.fromarray(annotated).resize(self._size, Image.Resampling.BILINEAR))
        width, height = self._size
        if width % 2 or height % 2:
            annotated = np.pad(annotated, ((0, height % 2), (0, width % 2), (0, 0)))
        self._last = annotated
        self._encode(annotated, seq, pts_seconds)

    def _encode(self, rgb: Image8, seq: int, pts_seconds: float) -> None:
        import av  # noqa: PLC0415

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._frames  # constant frame rate: the n-th input frame is the n-th output frame
        frame.time_base = 1 / self._options.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._frames += 1
        logger.debug("%s: seq %d (pts %.3f s) -> frame %d", self._path, seq, pts_seconds, self._frames - 1)

    def close(self) -> int:
        """Flush the encoder, close the file; return the frames written (idempotent)."""
        if not self._closed:
            self._closed = True
            if self._container is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
                logger.info("wrote %s: %d frame(s)", self._path, self._frames)
            else:
                logger.warning("%s: no frames, no video written", self._path)
        return self._frames

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def render_annotated(
    frames: Iterable[tuple[int, float, bytes]],
    events: Iterable[Mapping[str, Any]],
    out_path: str | Path,
    *,
    fps: float,
    blur: bool = False,
    parsing_overlay: bool = False,
    random_init_note: str | None = None,
) -> int:
    """Write ``out_path`` from one stream's ``frames`` ((seq, pts_seconds, jpeg), seq order) and events.

    ``events`` are that stream's faces.jsonl objects; observations are drawn on the frame of their
    ``seq``, other event types are ignored. Returns the number of frames written (= frames given,
    except leading undecodable ones).
    """
    by_seq: dict[int, list[Mapping[str, Any]]] = {}
    streams: set[str] = set()
    for event in events:
        streams.add(str(event.get("stream_id")))
        if event.get("type") == "observation":
            by_seq.setdefault(int(event["seq"]), []).append(event)
    if len(streams) > 1:
        raise VideoError(f"{out_path}: expected the events of one stream, got streams {sorted(streams)}")
    with AnnotatedVideoWriter(
        out_path, fps=fps, blur=blur, parsing_overlay=parsing_overlay, random_init_note=random_init_note
    ) as writer:
        for seq, pts, jpeg in frames:
            writer.write(seq, pts, jpeg, by_seq.get(seq, ()))
        return writer.close()
