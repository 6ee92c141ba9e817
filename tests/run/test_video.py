"""Tests for faceflow.run.video: drawing (exact, no codec) and the H.264 file (decoded with PyAV)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import support_run as sr

from faceflow.models.contract import PARSING_CLASSES
from faceflow.run.events_json import event_to_json
from faceflow.run.video import (
    PALETTE,
    RANDOM_INIT_NOTE,
    AnnotatedVideoWriter,
    VideoError,
    VideoOptions,
    annotate_frame,
    palette_colour,
    pose_axes,
    render_annotated,
    track_colour,
    track_label,
    warp_mask,
)

BOX = (100.0, 80.0, 180.0, 180.0)
W, H = 320, 240


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def obs(seq: int = 0, *, random_init: bool = True, **kwargs: Any) -> dict[str, Any]:
    event = sr.observation(
        "cam1", seq, kwargs.pop("track_id", "t1"), kwargs.pop("box", BOX), random_init=random_init, **kwargs
    )
    return event_to_json(event, include_parsing_mask=True)


def grey(value: int = 128) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def textured() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    checker = (((xx // 4) + (yy // 4)) % 2 * 200 + 28).astype(np.uint8)
    return np.stack([checker] * 3, axis=2)


# --- labels, colours, geometry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "track", "expected"),
    [
        ({"id": "id-aa11", "name": "Alice", "distance": 0.314}, "3", "t3 · Alice 0.31"),
        ({"id": "anon-1a2b3c4d5e", "name": None, "distance": 0.2}, "t3", "t3 · anon-1a2b…"),
        ({"id": "anon-1a2b", "name": None, "distance": 0.0}, "t3", "t3 · anon-1a2b"),
        (None, "t12", "t12"),
    ],
)
def test_track_label(identity: dict[str, Any] | None, track: str, expected: str) -> None:
    assert track_label({"track_id": track, "identity": identity}) == expected


def test_track_colour_is_stable_and_from_the_palette() -> None:
    assert track_colour("cam1", "t1") == track_colour("cam1", "t1") == palette_colour("cam1/t1")
    assert track_colour("cam1", "t1") in PALETTE
    assert len({track_colour("cam1", f"t{i}") for i in range(40)}) > len(PALETTE) // 2
    # CRC-32 based: the same colour in every process (hash() would be salted per process)
    assert palette_colour("cam1/t1") == PALETTE[zlib.crc32(b"cam1/t1") % len(PALETTE)]


@pytest.mark.parametrize(
    ("pose", "expected"),
    [
        ((0.0, 0.0, 0.0), ((10.0, 0.0), (0.0, 10.0), (0.0, 0.0))),
        # positive yaw: the nose (z) turns to image-left
        ((0.0, math.pi / 2, 0.0), ((0.0, 0.0), (0.0, 10.0), (-10.0, 0.0))),
        # positive pitch: the nose goes up (image y decreases)
        ((math.pi / 2, 0.0, 0.0), ((10.0, 0.0), (0.0, 0.0), (0.0, -10.0))),
        # positive roll: x turns clockwise on screen (towards +y)
        ((0.0, 0.0, math.pi / 2), ((0.0, 10.0), (-10.0, 0.0), (0.0, 0.0))),
    ],
)
def test_pose_axes_convention(
    pose: tuple[float, float, float], expected: tuple[tuple[float, float], ...]
) -> None:
    got = pose_axes(*pose, 10.0)
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-9)


def test_warp_mask_maps_crop_pixels_onto_the_crop_box() -> None:
    ids = np.zeros((4, 4), np.uint8)
    ids[0, 0], ids[3, 3] = 1, 2
    x0, y0, region = warp_mask(ids, (10.0, 20.0, 18.0, 28.0), 100, 100)  # 2x scale
    assert (x0, y0, region.shape) == (10, 20, (8, 8))
    assert region[:2, :2].tolist() == [[1, 1], [1, 1]]
    assert region[6:, 6:].tolist() == [[2, 2], [2, 2]]
    assert int(region[2:6].sum()) == 0
    x0, y0, region = warp_mask(ids, (-4.0, -4.0, 4.0, 4.0), 100, 100)  # clipped to the frame
    assert (x0, y0, region.shape) == (0, 0, (4, 4))
    assert int(region[3, 3]) == 2
    assert warp_mask(ids, (200.0, 200.0, 210.0, 210.0), 100, 100)[2].size == 0
    with pytest.raises(VideoError, match="expected a crop_box with x2 > x1"):
        warp_mask(ids, (5.0, 5.0, 5.0, 9.0), 100, 100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, r"fps: expected a finite number in \(0, 1000\], got 0"),
        ({"fps": float("nan")}, "got nan"),
        ({"fps": "10"}, "got str"),
        ({"fps": 10, "crf": 60}, "crf: expected an int in 0..51, got 60"),
        ({"fps": 10, "blur": "yes"}, "blur: expected a bool, got str"),
        ({"fps": 10, "random_init_note": 3}, "random_init_note: expected a str or None, got int"),
    ],
)
def test_options_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VideoError, match=message):
        VideoOptions(**kwargs)


def test_fractional_fps_is_a_rational_rate() -> None:
    assert str(VideoOptions(fps=30000 / 1001).rate) == "30000/1001"
    assert str(VideoOptions(fps=12.5).rate) == "25/2"
    assert VideoOptions(fps=10).rate == 10


# --- drawing without a codec (exact) -----------------------------------------------------------------


def test_box_is_drawn_in_the_track_colour() -> None:
    out = annotate_frame(grey(), [obs()])
    colour = np.array(track_colour("cam1", "t1"))
    x1, y1, x2, y2 = (int(v) for v in BOX)
    assert np.array_equal(out[(y1 + y2) // 2, x1], colour)  # left edge
    assert np.array_equal(out[y2, (x1 + x2) // 2], colour)  # bottom edge
    assert np.array_equal(out[200, 20], [128, 128, 128])  # background
    assert np.array_equal(out[y1 + 20, x1 + 20], [128, 128, 128])  # inside, away from the marks


def test_landmarks_and_pose_axes_only_when_analyzed() -> None:
    analyzed = annotate_frame(grey(), [obs()])
    skipped = annotate_frame(grey(), [obs(analyzed=False, results_seq=0)])
    nose = [round(v) for v in sr.landmarks68(BOX)[30]]
    inner = (slice(int(BOX[1]) + 10, int(BOX[3]) - 10), slice(int(BOX[0]) + 10, int(BOX[2]) - 10))
    assert (analyzed[inner] != 128).any(axis=2).sum() > 100  # 68 dots and three axes
    assert not (skipped[inner] != 128).any()
    assert not np.array_equal(analyzed[nose[1], nose[0]], [128, 128, 128])


def test_unanalyzed_box_is_dashed() -> None:
    out = annotate_frame(grey(), [obs(analyzed=False, results_seq=0)])
    x1, y1, y2 = int(BOX[0]), int(BOX[1]) + 10, int(BOX[3])
    edge = (out[y1:y2, x1] != 128).any(axis=1)
    assert 0.2 < edge.mean() < 0.8  # gaps in the outline
    solid = annotate_frame(grey(), [obs()])
    assert (solid[y1:y2, x1] != 128).any(axis=1).all()


def test_no_observations_leave_the_frame_unchanged() -> None:
    frame = textured()
    assert np.array_equal(annotate_frame(frame, []), frame)
    assert np.array_equal(annotate_frame(frame, [], blur=True, parsing_overlay=True), frame)


def _far_from(box: tuple[float, ...], margin: int) -> np.ndarray:
    keep = np.ones((H, W), bool)
    x1, y1, x2, y2 = box
    keep[
        max(0, int(y1) - margin - 40) : int(y2) + margin, max(0, int(x1) - margin) : int(x2) + margin + 60
    ] = False
    return keep  # the label sits above the box (40 px allowance), the tag right of it


@pytest.mark.parametrize("random_init", [True, False])
def test_blur_changes_the_face_and_nothing_far_from_it(random_init: bool) -> None:
    frame = textured()
    observation = obs(random_init=random_init, mask=True)
    plain = annotate_frame(frame, [observation])
    blurred = annotate_frame(frame, [observation], blur=True)
    diff = np.abs(plain.astype(int) - blurred.astype(int)).sum(axis=2)
    face = diff[int(BOX[1]) + 25 : int(BOX[3]) - 25, int(BOX[0]) + 20 : int(BOX[2]) - 20]
    assert (face > 30).mean() > 0.5
    far = _far_from(BOX, 12)
    assert int(diff[far].max()) == 0


def test_blur_follows_the_mask_with_trained_weights_and_the_box_with_random_ones() -> None:
    frame = textured()
    # the box's bottom-left corner: background in the mask (the top corners are hair)
    corner = (slice(int(BOX[3]) - 9, int(BOX[3]) - 4), slice(int(BOX[0]) + 4, int(BOX[0]) + 9))
    for random_init, blurred_corner in ((False, False), (True, True)):
        observation = obs(random_init=random_init, mask=True)
        plain = annotate_frame(frame, [observation])
        out = annotate_frame(frame, [observation], blur=True)
        changed = bool((plain[corner] != out[corner]).any())
        assert changed is blurred_corner, f"random_init={random_init}: box corner (background in the mask)"
    # a corner note means random weights too, whatever the models say
    observation = obs(random_init=False, mask=True)
    plain = annotate_frame(frame, [observation], random_init_note="x")
    out = annotate_frame(frame, [observation], blur=True, random_init_note="x")
    assert (plain[corner] != out[corner]).any()


def test_parsing_overlay_paints_the_mask_classes() -> None:
    frame = grey()
    observation = obs(random_init=False, mask=True)
    out = annotate_frame(frame, [observation], parsing_overlay=True)
    plain = annotate_frame(frame, [observation])
    x0, y0, region = warp_mask(sr.parsing_ids(), sr.crop_box_of(BOX), W, H)
    h, w = region.shape
    changed = (out[y0 : y0 + h, x0 : x0 + w] != plain[y0 : y0 + h, x0 : x0 + w]).any(axis=2)
    unmarked = (plain[y0 : y0 + h, x0 : x0 + w] == 128).all(axis=2)  # not under a box, dot or axis
    skin = (region == PARSING_CLASSES.index("skin")) & unmarked
    background = region == 0
    assert skin.sum() > 2000
    assert changed[skin].all()
    assert not changed[background].any()


def test_random_init_note_is_drawn_in_a_corner() -> None:
    out = annotate_frame(grey(), [], random_init_note=RANDOM_INIT_NOTE)
    assert (out[-20:, :60] != 128).any()
    assert np.array_equal(out[:100], grey()[:100])


def test_annotate_frame_refuses_bad_frames() -> None:
    with pytest.raises(VideoError, match=r"expected an HxWx3 uint8 frame, got float64 \(4, 4, 3\)"):
        annotate_frame(np.zeros((4, 4, 3)), [])


# --- the encoded file ----------------------------------------------------------------------------------


def test_render_writes_one_frame_per_input_frame(tmp_path: Path) -> None:
    frames = sr.flat_frames(12)
    events = [obs(seq) for seq in range(0, 12, 2)]
    path = tmp_path / "annotated.mp4"
    assert render_annotated(frames, events, path, fps=10.0) == 12
    decoded = decode(path)
    assert len(decoded) == 12
    assert decoded[0].shape == (H, W, 3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 10
    # frames with an observation show the box; the others do not
    x1, y1, y2 = int(BOX[0]), int(BOX[1]), int(BOX[3])
    colour = np.array(track_colour("cam1", "t1"), float)
    for seq, image in enumerate(decoded):
        edge = image[y1 + 20 : y2 - 20, x1 - 1 : x1 + 2].reshape(-1, 3).astype(float).mean(axis=0)
        background = image[200:230, 10:40].reshape(-1, 3).astype(float).mean(axis=0)
        assert np.abs(background - 128).max() < 6, seq
        if seq % 2 == 0:
            assert np.linalg.norm(edge - colour) < np.linalg.norm(edge - 128), seq
        else:
            assert np.abs(edge - 128).max() < 6, seq


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = sr.flat_frames(3, width=321, height=241)
    path = tmp_path / "odd.mp4"
    assert render_annotated(frames, [], path, fps=25.0) == 3
    decoded = decode(path)
    assert len(decoded) == 3
    assert decoded[0].shape == (242, 322, 3)


def test_no_events_leave_frames_unchanged_apart_from_encoding(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    frames = [(seq, seq / 10, sr.jpeg(smooth)) for seq in range(5)]
    path = tmp_path / "plain.mp4"
    render_annotated(frames, [], path, fps=10.0)
    for image in decode(path):
        assert np.abs(image.astype(int) - smooth.astype(int)).mean() < 3


def test_blur_in_the_file_changes_the_face_region_only(tmp_path: Path) -> None:
    frames = sr.textured_frames(4)
    events = [obs(seq, mask=True, random_init=False) for seq in range(4)]
    render_annotated(frames, events, tmp_path / "a.mp4", fps=10.0)
    render_annotated(frames, events, tmp_path / "b.mp4", fps=10.0, blur=True)
    for plain, blurred in zip(decode(tmp_path / "a.mp4"), decode(tmp_path / "b.mp4"), strict=True):
        diff = np.abs(plain.astype(int) - blurred.astype(int)).mean(axis=2)
        face = diff[int(BOX[1]) + 25 : int(BOX[3]) - 25, int(BOX[0]) + 20 : int(BOX[2]) - 20]
        assert face.mean() > 30
        assert diff[_far_from(BOX, 16)].mean() < 2


def test_unanalyzed_observations_reuse_the_tracks_last_mask(tmp_path: Path) -> None:
    """With trained weights the skipped frame is blurred by the moved mask, so its box corner stays sharp."""
    moved = (120.0, 90.0, 200.0, 190.0)
    events = [
        obs(0, mask=True, random_init=False),
        obs(1, box=moved, analyzed=False, results_seq=0, random_init=False),
    ]
    writer_frames = sr.textured_frames(2)
    frame = textured()
    corner = (slice(int(moved[3]) - 9, int(moved[3]) - 4), slice(int(moved[0]) + 4, int(moved[0]) + 9))
    centre = (slice(130, 150), slice(150, 170))
    path = tmp_path / "m.mp4"
    with AnnotatedVideoWriter(path, fps=10.0, blur=True, crf=0) as writer:
        for (seq, pts, jpeg), event in zip(writer_frames, events, strict=True):
            writer.write(seq, pts, jpeg, [event])
    second = decode(path)[1]
    reference = annotate_frame(frame, [events[1]])  # the same marks, no blur
    assert np.abs(second[corner].astype(int) - reference[corner].astype(int)).mean() < 12
    assert np.abs(second[centre].astype(int) - reference[centre].astype(int)).mean() > 30


def test_writer_refuses_out_of_order_frames_and_mixed_streams(tmp_path: Path) -> None:
    frames = sr.flat_frames(3)
    with AnnotatedVideoWriter(tmp_path / "x.mp4", fps=10.0) as writer:
        writer.write(*frames[1])
        with pytest.raises(VideoError, match="expected frames in increasing seq order, got seq 0 after 1"):
            writer.write(*frames[0])
    with pytest.raises(VideoError, match="closed"):
        writer.write(*frames[2])
    other = event_to_json(sr.observation("cam2", 0, "t1", BOX))
    with pytest.raises(
        VideoError, match=r"expected the events of one stream, got streams \['cam1', 'cam2'\]"
    ):
        render_annotated(frames, [obs(0), other], tmp_path / "y.mp4", fps=10.0)


def test_undecodable_frame_repeats_the_previous_one(tmp_path: Path) -> None:
    frames = sr.flat_frames(3)
    frames[1] = (1, 0.1, b"\xff\xd8\xffgarbage")
    path = tmp_path / "u.mp4"
    assert render_annotated(frames, [], path, fps=10.0) == 3
    assert len(decode(path)) == 3
