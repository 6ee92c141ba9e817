"""The demo clip's renderer: draws the frames of a :class:`ClipSpec` and computes their truth.

:class:`SceneRenderer` cuts each actor out of its photo (a feathered head-and-shoulders
silhouette), builds the room (tinted skimage brick, gravel and grass textures, a floor gradient,
soft light) and the occluders, and composites them in depth order with sub-pixel motion, a gait
bounce, a little jitter, vignetting and sensor noise. Separately and far cheaper, it computes each
frame's ground truth (:class:`GTFrame` of :class:`GTFace`): the face box the detector draws
(CenterFace's box on the original photo, moved and scaled with the sprite) and the fraction of it
that is really visible, from the alpha masks of every layer in front of it and the frame border.

Determinism: pixel arithmetic is +, -, *, /, sqrt, floor and integer operations only (no
transcendental functions, whose SIMD variants differ between CPUs), resizing is Pillow's bicubic
filter (a polynomial kernel), and noise and jitter come from a PCG64 seeded by ``(seed, frame)``.
The same spec therefore gives the same pixels and the same truth on every machine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceflow.run.democlip_types import (
    OCCLUDED_BELOW,
    PHOTOS,
    Actor,
    Box,
    ClipSpec,
    ClipSpecError,
    DemoClipError,
    GTFace,
    GTFrame,
    Keyframe,
    Occluder,
    Waypoint,
)

__all__ = ["SceneRenderer", "load_photo"]

FloatImage = npt.NDArray[np.float32]
RGBImage = npt.NDArray[np.uint8]


@functools.cache
def _load_photo_cached(source: str) -> RGBImage:
    from skimage import data  # noqa: PLC0415 - only needed when rendering

    if source == "skimage.astronaut":
        rgb = np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    elif source == "skimage.camera":
        gray = np.asarray(data.camera(), dtype=np.uint8)  # type: ignore[no-untyped-call]
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif source == "matplotlib.grace_hopper":
        from matplotlib import cbook  # noqa: PLC0415

        with Image.open(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    else:
        raise DemoClipError(
            f"photo source: expected one of {sorted(p.source for p in PHOTOS.values())}, got {source!r}"
        )
    rgb = np.ascontiguousarray(rgb)
    rgb.setflags(write=False)
    return rgb


def load_photo(person: str) -> RGBImage:
    """The original photo of ``person`` (a key of :data:`PHOTOS`) as read-only HxWx3 uint8 RGB."""
    if person not in PHOTOS:
        raise DemoClipError(f"person: expected one of {sorted(PHOTOS)}, got {person!r}")
    return _load_photo_cached(PHOTOS[person].source)


@functools.cache
def _texture(name: str) -> npt.NDArray[np.uint8]:
    from skimage import data  # noqa: PLC0415

    tex = np.ascontiguousarray(np.asarray(getattr(data, name)(), dtype=np.uint8))
    tex.setflags(write=False)
    return tex


def _resize(image: npt.NDArray[np.uint8], width: int, height: int) -> FloatImage:
    """Bicubic resize (deterministic: a polynomial kernel) of a uint8 image, as float32."""
    out = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32)


# --- Sprites ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sprite:
    """Premultiplied RGBA (float32; RGB 0..255 times alpha 0..1) with a 1-pixel transparent border,
    and the face box in sprite pixels (border included)."""

    rgba: FloatImage
    face_box: Box | None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgba.shape[1], self.rgba.shape[0]


def _smoothstep(x: npt.NDArray[np.floating[Any]]) -> FloatImage:
    c = np.clip(x, 0.0, 1.0)
    return cast(FloatImage, (c * c * (3.0 - 2.0 * c)).astype(np.float32, copy=False))


def _finish(rgb: FloatImage, alpha: FloatImage, face_box: Box | None) -> _Sprite:
    rgba = np.zeros((rgb.shape[0] + 2, rgb.shape[1] + 2, 4), np.float32)
    rgba[1:-1, 1:-1, :3] = np.clip(rgb, 0.0, 255.0) * alpha[:, :, None]
    rgba[1:-1, 1:-1, 3] = alpha
    rgba.setflags(write=False)
    box = None if face_box is None else (face_box[0] + 1, face_box[1] + 1, face_box[2] + 1, face_box[3] + 1)
    return _Sprite(rgba, box)


def _actor_sprite(actor: Actor, face_height: float) -> _Sprite:
    """Cut ``actor``'s person out of the photo at the scale where the face is ``face_height`` tall."""
    photo = PHOTOS[actor.person]
    original = load_photo(actor.person)
    fx1, fy1, fx2, fy2 = photo.face_box
    # Extend the body downwards (the clothes below the chin, mirrored back and forth) so that it
    # reaches behind the planter at any scale.
    band = original[math.ceil(fy2 + 0.35 * (fy2 - fy1)) :]
    extension = np.concatenate([band[::-1], band] * (1 + original.shape[0] // (2 * len(band))))
    image = np.concatenate([original, extension[: original.shape[0] // 2]])
    ph, pw = image.shape[:2]
    blobs = photo.silhouette
    x0 = max(0, math.floor(min(b.cx - b.rx for b in blobs)))
    x1 = min(pw, math.ceil(max(b.cx + b.rx for b in blobs)))
    y0 = max(0, math.floor(min(b.cy - b.ry for b in blobs)))
    y1 = min(ph, math.ceil(max(b.cy + b.ry for b in blobs)))
    scale = face_height / (fy2 - fy1)
    width, height = max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale))
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    rgb = _resize(image[y0:y1, x0:x1], width, height)
    # The silhouette at sprite resolution: pixel centres mapped back to photo pixels.
    px = ((np.arange(width, dtype=np.float32) + 0.5) / np.float32(sx) + np.float32(x0))[None, :]
    py = ((np.arange(height, dtype=np.float32) + 0.5) / np.float32(sy) + np.float32(y0))[:, None]
    feather = np.float32(0.07 * (fy2 - fy1))
    alpha = np.zeros((height, width), np.float32)
    for b in blobs:
        dx = np.abs(px - np.float32(b.cx)) / np.float32(b.rx)
        dy = np.abs(py - np.float32(b.cy)) / np.float32(b.ry)
        r = (
            np.sqrt(dx * dx + dy * dy)
            if b.power == 2
            else np.sqrt(np.sqrt(dx * dx * (dx * dx) + dy * dy * (dy * dy)))
        )
        alpha = np.maximum(alpha, _smoothstep((1.0 - r) * np.float32(min(b.rx, b.ry)) / feather))
    fade_rows = max(1.0, 0.06 * ph)
    alpha = alpha * _smoothstep((np.float32(ph) - py) / np.float32(fade_rows))
    gain = np.array(actor.tint, np.float32) * np.float32(actor.brightness)
    rgb = rgb * gain
    box = ((fx1 - x0) * sx, (fy1 - y0) * sy, (fx2 - x0) * sx, (fy2 - y0) * sy)
    if actor.mirror:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        box = (width - box[2], box[1], width - box[0], box[3])
    return _finish(np.ascontiguousarray(rgb), np.ascontiguousarray(alpha), box)


def _luma(name: str, width: int, height: int, *, stretch: int = 1) -> FloatImage:
    """A grayscale skimage texture resized to cover ``width`` x ``height`` (0..1 floats)."""
    tex = _texture(name)
    side = max(width, height)
    if stretch > 1:
        small = _resize(tex, max(2, side // stretch), side).astype(np.uint8)
        return _resize(small, side, side)[:height, :width] / np.float32(255.0)
    return _resize(tex, side, side)[:height, :width] / np.float32(255.0)


def _occluder_sprite(occluder: Occluder) -> _Sprite:
    w, h = max(2, round(occluder.width)), max(2, round(occluder.height))
    u = ((np.arange(w, dtype=np.float32) + 0.5) / np.float32(w))[None, :]
    v = ((np.arange(h, dtype=np.float32) + 0.5) / np.float32(h))[:, None]
    alpha = np.ones((h, w), np.float32)
    rgb: npt.NDArray[np.floating[Any]]
    if occluder.material == "concrete":
        lum = 0.8 + 0.3 * (_luma("gravel", w, h) - 0.5)
        shade = 0.62 + 0.5 * (1.0 - (2.0 * u - 0.8) * (2.0 * u - 0.8)).clip(0.0, 1.0)  # a lit round pillar
        rgb = (lum * shade)[:, :, None] * np.array([190.0, 186.0, 178.0], np.float32)
    elif occluder.material == "panel":
        lum = 0.85 + 0.45 * (_luma("gravel", w, h, stretch=8) - 0.5)
        edge = np.minimum(np.minimum(u, 1.0 - u) * w, np.minimum(v, 1.0 - v) * h)
        frame = np.where(edge < max(3.0, 0.04 * min(w, h)), 0.55, 1.0).astype(np.float32)
        rgb = (lum * frame)[:, :, None] * np.array([150.0, 108.0, 70.0], np.float32)
    else:  # planter: a hedge with a ragged top over a stone box
        hedge = 0.55
        grass = 0.75 + 0.6 * (_luma("grass", w, h) - 0.5)
        stone = 0.8 + 0.3 * (_luma("gravel", w, h) - 0.5)
        row = _texture("grass")[0:1, :].astype(np.uint8)
        ragged = _resize(_resize(row, max(2, w // 14), 1).astype(np.uint8), w, 1)[0] / np.float32(255.0)
        top = (0.05 + 0.12 * ragged)[None, :]
        alpha = _smoothstep((v - top) * np.float32(h) + 0.5)
        leaves = (grass * (0.7 + 0.3 * v / hedge))[:, :, None] * np.array([92.0, 140.0, 64.0], np.float32)
        rim = np.where(np.abs(v - hedge) * h < 2.5, 1.25, 1.0).astype(np.float32)
        box = (stone * rim * (1.05 - 0.3 * (v - hedge)))[:, :, None] * np.array(
            [168.0, 158.0, 146.0], np.float32
        )
        rgb = np.where((v < hedge)[:, :, None], leaves, box).astype(np.float32)
    return _finish(rgb.astype(np.float32), alpha.astype(np.float32), None)


def _backdrop(spec: ClipSpec) -> FloatImage:
    w, h, b = spec.width, spec.height, spec.backdrop
    horizon = round(b.horizon * h)
    x = ((np.arange(w, dtype=np.float32) + 0.5) / np.float32(w))[None, :]
    y = ((np.arange(h, dtype=np.float32) + 0.5) / np.float32(h))[:, None]
    side = max(w, h)
    brick = _resize(np.ascontiguousarray(np.rot90(_texture("brick"))), side, side)[:h, :w] / np.float32(255.0)
    wall = (0.8 + 0.6 * (brick - 0.53)) * (0.82 + 0.18 * y / np.float32(b.horizon))
    gravel = _luma("gravel", w, h)
    depth = np.clip((y - np.float32(b.horizon)) / np.float32(1.0 - b.horizon), 0.0, 1.0)
    floor = (0.55 + 0.45 * depth) * (1.0 + 0.35 * depth * (gravel - 0.5))
    rows = np.arange(h)[:, None]
    tint = np.where(
        (rows < horizon)[:, :, None], np.array(b.wall_tint, np.float32), np.array(b.floor_tint, np.float32)
    )
    lum = np.where(rows < horizon, wall, floor)
    skirting = np.abs(rows - horizon + 0.5) < max(1.5, 0.01 * h)
    lum = np.where(skirting, lum * 0.45, lum)
    lx, ly = b.light
    r2 = ((x - np.float32(lx)) * np.float32(w / h)) ** 2 + (y - np.float32(ly)) ** 2
    light = 1.0 - np.float32(b.light_strength) * 0.5 + np.float32(b.light_strength) / (1.0 + 6.0 * r2)
    out = (lum * light)[:, :, None] * tint * np.float32(255.0)
    return cast(FloatImage, np.ascontiguousarray(out, dtype=np.float32))


# --- Placement and sampling ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    """Frame pixel = (ox, oy) + k * sprite pixel."""

    k: float
    ox: float
    oy: float

    def rect(self, sprite: _Sprite, width: int, height: int) -> tuple[int, int, int, int] | None:
        sw, sh = sprite.size
        x0, y0 = max(0, math.floor(self.ox)), max(0, math.floor(self.oy))
        x1 = min(width, math.ceil(self.ox + self.k * sw))
        y1 = min(height, math.ceil(self.oy + self.k * sh))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _interpolate(path: Sequence[Waypoint | Keyframe], t: float) -> tuple[int, float] | None:
    """(segment index, fraction) of ``t`` along ``path``, or None when ``t`` is outside it."""
    if len(path) == 1:
        return 0, 0.0
    if t < path[0].t or t > path[-1].t:
        return None
    i = max(0, min(len(path) - 2, next((j for j in range(len(path)) if path[j].t > t), len(path)) - 1))
    a, b = path[i], path[i + 1]
    return i, (t - a.t) / (b.t - a.t)


def _sample(
    sprite: _Sprite, at: _Placement, rect: tuple[int, int, int, int], *, alpha_only: bool
) -> FloatImage:
    """Bilinear samples of the sprite (premultiplied RGBA, or alpha only) at the frame pixels of
    ``rect`` (x0, y0, x1, y1); zero outside the sprite."""
    x0, y0, x1, y1 = rect
    image = sprite.rgba[:, :, 3:] if alpha_only else sprite.rgba
    h, w = image.shape[:2]
    sx = (np.arange(x0, x1, dtype=np.float64) + 0.5 - at.ox) / at.k - 0.5
    sy = (np.arange(y0, y1, dtype=np.float64) + 0.5 - at.oy) / at.k - 0.5
    fx_, fy_ = np.floor(sx), np.floor(sy)
    fx = (sx - fx_).astype(np.float32)[None, :, None]
    fy = (sy - fy_).astype(np.float32)[:, None, None]
    c0 = np.clip(fx_.astype(np.intp), 0, w - 1)
    c1 = np.clip(fx_.astype(np.intp) + 1, 0, w - 1)
    r0 = np.clip(fy_.astype(np.intp), 0, h - 1)
    r1 = np.clip(fy_.astype(np.intp) + 1, 0, h - 1)
    lo, hi = int(r0.min()), int(r1.max()) + 1
    band = image[lo:hi]
    rows = band[:, c0] * (1.0 - fx) + band[:, c1] * fx
    return cast(FloatImage, rows[r0 - lo] * (1.0 - fy) + rows[r1 - lo] * fy)


@dataclass(frozen=True)
class _Layer:
    name: str
    z: int
    sprite: _Sprite
    actor: Actor | None
    occluder: Occluder | None
    phase: float


class SceneRenderer:
    """Draws the frames of a :class:`ClipSpec` and computes their ground truth.

    ``truth()`` needs only alpha masks inside face boxes and is fast; ``render(i)`` draws the
    pixels of frame ``i``. Both are pure functions of the spec and the frame index.
    """

    def __init__(self, spec: ClipSpec) -> None:
        if not isinstance(spec, ClipSpec):
            raise ClipSpecError(f"spec: expected a ClipSpec, got {type(spec).__name__}")
        self.spec = spec
        layers = []
        for actor in spec.actors:
            largest = max(p.face_height for p in actor.path)
            phase = sum(map(ord, actor.instance)) % 97 / 97.0
            layers.append(_Layer(actor.instance, actor.z, _actor_sprite(actor, largest), actor, None, phase))
        for occ in spec.occluders:
            layers.append(_Layer(occ.name, occ.z, _occluder_sprite(occ), None, occ, 0.0))
        self._layers: tuple[_Layer, ...] = tuple(sorted(layers, key=lambda layer: layer.z))
        self._background: FloatImage | None = None

    @property
    def frame_count(self) -> int:
        """Frames in the clip."""
        return self.spec.frame_count

    def _placements(self, index: int) -> list[_Placement | None]:
        """Where every layer is in frame ``index`` (None: not in the scene)."""
        t = index / self.spec.fps
        rng = np.random.default_rng([self.spec.seed, index, 0])
        jitter = rng.random((len(self._layers), 2)) - 0.5  # drawn for every layer, always
        out: list[_Placement | None] = []
        for layer, (jx, jy) in zip(self._layers, jitter, strict=True):
            where = _interpolate(layer.actor.path if layer.actor else cast(Occluder, layer.occluder).path, t)
            if where is None:
                out.append(None)
                continue
            i, f = where
            if layer.actor is not None:
                path = layer.actor.path
                a, b = path[i], path[min(i + 1, len(path) - 1)]
                x, y = a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f
                fh = a.face_height + (b.face_height - a.face_height) * f
                speed = abs(b.x - a.x) / (b.t - a.t) if b.t > a.t else 0.0
                p = (t * 1.7 + layer.phase) % 1.0
                y -= layer.actor.bob * min(1.0, speed / 40.0) * 4.0 * p * (1.0 - p)
                x, y = x + 0.3 * float(jx), y + 0.3 * float(jy)
                box = cast(Box, layer.sprite.face_box)
                k = fh / (box[3] - box[1])
                out.append(_Placement(k, x - k * (box[0] + box[2]) / 2, y - k * (box[1] + box[3]) / 2))
            else:
                kp = cast(Occluder, layer.occluder).path
                a2, b2 = kp[i], kp[min(i + 1, len(kp) - 1)]
                sw, sh = layer.sprite.size
                cx, cy = a2.x + (b2.x - a2.x) * f, a2.y + (b2.y - a2.y) * f
                out.append(_Placement(1.0, cx - sw / 2, cy - sh / 2))
        return out

    def _visible(self, placements: list[_Placement | None], front_of: int, box: Box) -> float:
        """Fraction of the pixel centres of ``box`` inside the frame and not covered by the layers
        after ``front_of`` (nearer the camera), weighted by their alpha."""
        w, h = self.spec.width, self.spec.height
        ix0, ix1 = math.ceil(box[0] - 0.5), math.ceil(box[2] - 0.5)
        iy0, iy1 = math.ceil(box[1] - 0.5), math.ceil(box[3] - 0.5)
        total = max(0, ix1 - ix0) * max(0, iy1 - iy0)
        rect = (max(0, ix0), max(0, iy0), min(w, ix1), min(h, iy1))
        if total == 0 or rect[2] <= rect[0] or rect[3] <= rect[1]:
            return 0.0
        clear = np.ones((rect[3] - rect[1], rect[2] - rect[0]), np.float32)
        for layer, at in zip(self._layers[front_of + 1 :], placements[front_of + 1 :], strict=True):
            if at is None or (lr := at.rect(layer.sprite, w, h)) is None:
                continue
            sub = (max(rect[0], lr[0]), max(rect[1], lr[1]), min(rect[2], lr[2]), min(rect[3], lr[3]))
            if sub[2] <= sub[0] or sub[3] <= sub[1]:
                continue
            alpha = _sample(layer.sprite, at, sub, alpha_only=True)[:, :, 0]
            view = clear[sub[1] - rect[1] : sub[3] - rect[1], sub[0] - rect[0] : sub[2] - rect[0]]
            view *= 1.0 - alpha
        return float(clear.sum(dtype=np.float64)) / total

    def truth(self) -> tuple[GTFrame, ...]:
        """The ground truth of every frame."""
        w, h, fps = self.spec.width, self.spec.height, self.spec.fps
        appearances: dict[str, int] = {}
        on_screen: set[str] = set()
        frames = []
        for index in range(self.frame_count):
            placements = self._placements(index)
            faces = []
            for li, (layer, at) in enumerate(zip(self._layers, placements, strict=True)):
                if layer.actor is None or at is None:
                    continue
                sb = cast(Box, layer.sprite.face_box)
                box = (at.ox + at.k * sb[0], at.oy + at.k * sb[1], at.ox + at.k * sb[2], at.oy + at.k * sb[3])
                clamped = (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))
                if clamped[2] - clamped[0] < 0.5 or clamped[3] - clamped[1] < 0.5:
                    continue
                name = layer.actor.instance
                if name not in on_screen:
                    appearances[name] = appearances.get(name, 0) + 1
                visible = round(self._visible(placements, li, box), 4)
                faces.append(
                    GTFace(
                        person=layer.actor.person,
                        instance=name,
                        appearance=f"{name}/{appearances[name]}",
                        box=cast(Box, tuple(round(v, 2) for v in clamped)),
                        visible=visible,
                        occluded=visible < OCCLUDED_BELOW,
                    )
                )
            on_screen = {f.instance for f in faces}
            frames.append(GTFrame(index=index, pts=round(index / fps, 6), faces=tuple(faces)))
        return tuple(frames)

    def render(self, index: int) -> RGBImage:
        """The RGB pixels (HxWx3 uint8) of frame ``index``."""
        if not 0 <= index < self.frame_count:
            raise DemoClipError(f"frame index: expected 0..{self.frame_count - 1}, got {index}")
        w, h = self.spec.width, self.spec.height
        if self._background is None:
            self._background = _backdrop(self.spec)
        frame = self._background.copy()
        for layer, at in zip(self._layers, self._placements(index), strict=True):
            if at is None or (rect := at.rect(layer.sprite, w, h)) is None:
                continue
            rgba = _sample(layer.sprite, at, rect, alpha_only=False)
            view = frame[rect[1] : rect[3], rect[0] : rect[2]]
            view *= 1.0 - rgba[:, :, 3:]
            view += rgba[:, :, :3]
        x = ((np.arange(w, dtype=np.float32) + 0.5) / np.float32(w) - 0.5)[None, :]
        y = ((np.arange(h, dtype=np.float32) + 0.5) / np.float32(h) - 0.5)[:, None]
        rng = np.random.default_rng([self.spec.seed, index, 1])
        exposure = 1.0 + 0.012 * (float(rng.random()) - 0.5)
        frame *= ((1.0 - 0.35 * (x * x + y * y)) * np.float32(exposure))[:, :, None]
        n = self.spec.noise
        if n:
            frame += (rng.integers(-n, n + 1, (h, w, 3)) + rng.integers(-n, n + 1, (h, w, 3))).astype(
                np.float32
            ) / 2
        return np.clip(np.rint(frame), 0, 255).astype(np.uint8)
