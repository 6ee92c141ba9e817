"""FaceXFormer: one transformer for every face-analysis task, compatible with the released checkpoint.

The network (Narayan et al., 2024) runs a torchvision Swin backbone, projects the outputs of its
four stages (``backbone.0.1``, ``0.3``, ``0.5``, ``0.7``) to 256 channels, fuses them at the
stride-4 resolution and decodes the fused map with learned task tokens (see
:mod:`faceflow.models.facexformer_layers`). One forward pass returns every head as a
:class:`FaceXFormerOutput`; decoding raw logits into labels and frame coordinates happens elsewhere
(DESIGN.md, "Model semantics").

Differences from the authors' code, none of which changes a parameter or an output value:

- the multi-scale features are collected by iterating the backbone's stages inside ``forward``,
  not by forward hooks appending to a list on the module, so concurrent calls are safe;
- ``forward`` takes only the images and returns all heads (the authors mask outputs by task id);
- the unused classifier-side modules (``backbone.1`` norm, pooling) are kept for checkpoint
  compatibility but not run.

Weights: :func:`load_facexformer` loads the official checkpoint (``state_dict_backbone``) strictly
and records its sha256, or builds a seeded random initialisation for tests and demos; construction
never downloads anything. :func:`export_onnx` writes the dynamic-batch ONNX model that Triton serves.
"""

from __future__ import annotations

import logging
import os
import pickle  # only for pickle.UnpicklingError
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast, get_args

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional

from faceflow.errors import ConfigError, FaceflowError
from faceflow.files import file_sha256
from faceflow.models.contract import CROP_SIZE, FACEXFORMER_INPUT, FACEXFORMER_OUTPUTS
from faceflow.models.facexformer_layers import (
    FaceDecoder,
    FaceXFormerOutput,
    FeatureProjection,
    PositionEmbeddingRandom,
    TwoWayTransformer,
)

__all__ = [
    "CHECKPOINT_STATE_KEY",
    "INPUT_NAME",
    "INPUT_SIZE",
    "OUTPUT_NAMES",
    "WEIGHTS_ENV_VAR",
    "BackboneName",
    "FaceXFormer",
    "FaceXFormerConfig",
    "FaceXFormerOutput",
    "WeightsError",
    "WeightsInfo",
    "export_onnx",
    "file_sha256",
    "load_facexformer",
    "weights_path_from_env",
]

logger = logging.getLogger(__name__)

BackboneName = Literal["swin_b", "swin_t"]

#: Channel widths of the four Swin stages whose outputs are fused.
STAGE_WIDTHS: Final[Mapping[str, tuple[int, int, int, int]]] = {
    "swin_b": (128, 256, 512, 1024),
    "swin_t": (96, 192, 384, 768),
}
_SWIN_BUILDERS: Final[Mapping[str, Callable[..., nn.Module]]] = {
    "swin_b": torchvision.models.swin_b,
    "swin_t": torchvision.models.swin_t,
}
#: Indices, inside ``backbone.0`` (the Swin ``features``), of the stages whose outputs are fused.
FEATURE_STAGES: Final[tuple[int, int, int, int]] = (1, 3, 5, 7)

DECODER_DIM: Final = 256
DECODER_DEPTH: Final = 2
DECODER_HEADS: Final = 8
DECODER_MLP_DIM: Final = 2048

INPUT_SIZE: Final = CROP_SIZE
INPUT_NAME: Final = FACEXFORMER_INPUT
OUTPUT_NAMES: Final[tuple[str, ...]] = FaceXFormerOutput._fields
if OUTPUT_NAMES != FACEXFORMER_OUTPUTS:
    raise RuntimeError(f"FaceXFormerOutput fields: expected {FACEXFORMER_OUTPUTS}, got {OUTPUT_NAMES}")
#: Key of the model's state dict inside the released checkpoint file.
CHECKPOINT_STATE_KEY: Final = "state_dict_backbone"
WEIGHTS_ENV_VAR: Final = "FACEFLOW_FACEXFORMER_WEIGHTS"
BACKBONE_ENV_VAR: Final = "FACEFLOW_FACEXFORMER_BACKBONE"
RANDOM_INIT: Final = "random-init"

_MAX_LISTED_KEYS = 5


class WeightsError(FaceflowError):
    """A FaceXFormer weights file is missing, unreadable or does not fit the configured network."""


@dataclass(frozen=True, kw_only=True)
class FaceXFormerConfig:
    """Which FaceXFormer to build.

    ``swin_b`` is the architecture of the released checkpoint; ``swin_t`` has the same decoder on a
    smaller backbone (about 3x faster on CPU), for tests and small machines with random weights.
    """

    backbone: BackboneName = "swin_b"

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or self.backbone not in STAGE_WIDTHS:
            raise ConfigError(
                f"FaceXFormer backbone: expected one of {', '.join(sorted(STAGE_WIDTHS))}, "
                f"got {self.backbone!r}"
            )

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        """Channel widths of the fused backbone stages (96..768 for swin_t, 128..1024 for swin_b)."""
        return STAGE_WIDTHS[self.backbone]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaceXFormerConfig:
        """Build from ``FACEFLOW_FACEXFORMER_BACKBONE`` (default ``swin_b``)."""
        env = os.environ if environ is None else environ
        value = env.get(BACKBONE_ENV_VAR, "").strip() or "swin_b"
        if value not in get_args(BackboneName):
            raise ConfigError(
                f"{BACKBONE_ENV_VAR}: expected one of {', '.join(get_args(BackboneName))}, got {value!r}"
            )
        return cls(backbone=cast(BackboneName, value))


@dataclass(frozen=True, kw_only=True)
class WeightsInfo:
    """Where a model's weights came from: ``sha256:<hex>`` of the checkpoint file, or ``random-init``."""

    provenance: str
    random_init: bool
    backbone: BackboneName

    def __post_init__(self) -> None:
        if self.random_init:
            if self.provenance != RANDOM_INIT:
                raise ValueError(
                    f"WeightsInfo.provenance: expected {RANDOM_INIT!r} for random weights, "
                    f"got {self.provenance!r}"
                )
            return
        prefix, _, digest = self.provenance.partition(":")
        if prefix != "sha256" or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise ValueError(
                f"WeightsInfo.provenance: expected 'sha256:' and 64 lowercase hex digits, "
                f"got {self.provenance!r}"
            )


class FaceXFormer(nn.Module):
    """The FaceXFormer network; ``forward(images [B,3,H,W]) -> FaceXFormerOutput`` with every head.

    Inputs are ImageNet-normalised RGB face crops, 224x224 for the released weights (any size the
    Swin backbone accepts works; parsing comes out at the input size). The state-dict layout equals
    the authors' release: ``backbone.*`` (torchvision Swin without its classifier), ``pe_layer.*``,
    ``face_decoder.*``, ``linear_c.*``, ``linear_fuse.*``. Call ``.eval()`` before inference: the
    Swin backbone uses stochastic depth in training mode.
    """

    def __init__(self, config: FaceXFormerConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else FaceXFormerConfig()
        # Never weights=...: construction must not reach the network.
        swin = _SWIN_BUILDERS[self.config.backbone](weights=None)
        self.backbone = nn.Sequential(*list(swin.children())[:-1])
        self.pe_layer = PositionEmbeddingRandom(DECODER_DIM // 2)
        self.face_decoder = FaceDecoder(
            transformer_dim=DECODER_DIM,
            transformer=TwoWayTransformer(
                depth=DECODER_DEPTH,
                embedding_dim=DECODER_DIM,
                num_heads=DECODER_HEADS,
                mlp_dim=DECODER_MLP_DIM,
            ),
        )
        self.linear_c = nn.ModuleList(
            FeatureProjection(width, DECODER_DIM) for width in self.config.stage_widths
        )
        self.linear_fuse = nn.Conv2d(
            DECODER_DIM * len(FEATURE_STAGES), DECODER_DIM, kernel_size=1, bias=False
        )
        self.feature_stages = list(FEATURE_STAGES)

    def forward(self, images: Tensor) -> FaceXFormerOutput:
        """Run the backbone, the fusion and the decoder once; return every head's raw output."""
        if images.dim() != 4:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        fused = self._fuse(self._multi_scale_features(images))
        image_pe = self.pe_layer(fused.shape[2], fused.shape[3]).unsqueeze(0)
        out: FaceXFormerOutput = self.face_decoder(fused, image_pe)
        return out

    def _multi_scale_features(self, images: Tensor) -> list[Tensor]:
        """Outputs of the Swin stages in ``feature_stages`` as NCHW tensors, finest first."""
        features: list[Tensor] = []
        x = images
        # backbone.0 is the Swin ``features`` Sequential: patch embedding, then stages and merges.
        for index, stage in enumerate(self.backbone[0].children()):
            x = stage(x)
            if index in self.feature_stages:
                features.append(x.permute(0, 3, 1, 2))
        return features

    def _fuse(self, features: list[Tensor]) -> Tensor:
        """Project every scale to 256 channels, resize to the finest scale, concat coarse-first, 1x1 conv."""
        batch = features[0].shape[0]
        target = [features[0].shape[2], features[0].shape[3]]
        projected: list[Tensor] = []
        for index, projection in enumerate(self.linear_c):
            feature = features[index]
            height, width = feature.shape[2], feature.shape[3]
            grid = projection(feature).permute(0, 2, 1).reshape(batch, -1, height, width)
            projected.append(functional.interpolate(grid, size=target, mode="bilinear", align_corners=False))
        projected.reverse()
        fused: Tensor = self.linear_fuse(torch.cat(projected, dim=1))
        return fused


def weights_path_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The checkpoint path in ``FACEFLOW_FACEXFORMER_WEIGHTS``, or None when unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get(WEIGHTS_ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def load_facexformer(
    config: FaceXFormerConfig, weights_path: Path | None, seed: int = 0
) -> tuple[FaceXFormer, WeightsInfo]:
    """Build a FaceXFormer in eval mode with its weights and their provenance.

    With ``weights_path``: the file must be a ``torch.save`` dict holding the model's state dict
    under ``state_dict_backbone`` (the authors' release), loadable with ``weights_only=True`` and
    matching the configured backbone key for key and shape; anything else raises
    :class:`WeightsError` naming the file and what was expected. Without: parameters come from
    ``torch.manual_seed(seed)`` (the caller's global RNG state is left as it was).
    """
    if weights_path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = FaceXFormer(config)
        logger.warning("FaceXFormer %s uses random-init weights (seed %d)", config.backbone, seed)
        info = WeightsInfo(provenance=RANDOM_INIT, random_init=True, backbone=config.backbone)
        return model.eval(), info

    path = Path(weights_path)
    state = _read_checkpoint(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FaceXFormer(config)
    _check_state_dict(model, state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a value that cannot be copied into the parameter
        raise WeightsError(f"FaceXFormer weights {path}: load_state_dict(strict=True) failed: {exc}") from exc
    info = WeightsInfo(provenance=f"sha256:{file_sha256(path)}", random_init=False, backbone=config.backbone)
    logger.info("FaceXFormer %s loaded from %s (%s)", config.backbone, path, info.provenance)
    return model.eval(), info


def _read_checkpoint(path: Path) -> Mapping[str, Tensor]:
    expected = f"a torch.save dict with the model's state dict under {CHECKPOINT_STATE_KEY!r}"
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise WeightsError(f"FaceXFormer weights {path}: expected {expected}, got {what}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise WeightsError(
            f"FaceXFormer weights {path}: expected {expected} (loadable with weights_only=True), "
            f"got {type(exc).__name__}: {_load_failure(exc)}"
        ) from exc
    if not isinstance(checkpoint, Mapping) or CHECKPOINT_STATE_KEY not in checkpoint:
        got = (
            f"a dict with keys {sorted(map(str, checkpoint))[:_MAX_LISTED_KEYS]}"
            if isinstance(checkpoint, Mapping)
            else type(checkpoint).__name__
        )
        raise WeightsError(f"FaceXFormer weights {path}: expected {expected}, got {got}")
    state = checkpoint[CHECKPOINT_STATE_KEY]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(
            f"FaceXFormer weights {path}: expected {CHECKPOINT_STATE_KEY!r} to map names to tensors, "
            f"got {type(state).__name__}"
        )
    return cast(Mapping[str, Tensor], state)


def _check_state_dict(model: FaceXFormer, state: Mapping[str, Tensor], path: Path) -> None:
    """Raise WeightsError listing missing, unexpected and wrongly shaped entries, if any."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key}: expected {list(expected[key].shape)}, got {list(state[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or wrong_shape):
        return
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if items:
            shown = "; ".join(items[:_MAX_LISTED_KEYS])
            more = f" and {len(items) - _MAX_LISTED_KEYS} more" if len(items) > _MAX_LISTED_KEYS else ""
            problems.append(f"{len(items)} {label} ({shown}{more})")
    hint = ""
    guessed = _guess_backbone(state)
    if guessed is not None and guessed != model.config.backbone:
        hint = f"; the file looks like a {guessed} checkpoint (FaceXFormerConfig(backbone={guessed!r}))"
    raise WeightsError(
        f"FaceXFormer weights {path}: expected the {model.config.backbone} key layout "
        f"({len(expected)} entries), got {len(state)} entries with {', '.join(problems)}{hint}"
    )


def _guess_backbone(state: Mapping[str, Tensor]) -> str | None:
    patch_embed = state.get("backbone.0.0.0.weight")
    if patch_embed is None:
        return None
    for name, widths in STAGE_WIDTHS.items():
        if patch_embed.shape[0] == widths[0]:
            return name
    return None


def _load_failure(exc: BaseException) -> str:
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own text suggests weights_only=False, which would run code from the file.
        return "not a checkpoint that loads without unpickling arbitrary objects (corrupt or foreign file)"
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def export_onnx(model: FaceXFormer, path: Path, opset: int = 17) -> Path:
    """Export ``model`` to ONNX with the legacy (TorchScript-based) exporter and a dynamic batch axis.

    Input ``images`` [B,3,224,224] float32; outputs named as :data:`OUTPUT_NAMES`, axis 0 ``batch``
    and the other axes fixed (``parsing`` is [B,11,224,224]). The model is traced in eval mode and
    its training flag restored afterwards. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.float32, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Swin branches on feature-map sizes, which are fixed by the 224x224 input, and the
            # legacy exporter announces its own deprecation; both are expected here.
            warnings.filterwarnings("ignore", message=r"Converting a tensor to a Python")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message=r"The feature will be removed", module=r"torch\.onnx")
            example_outputs = model(example)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.train(was_training)
    _fix_output_dims(
        path, {name: list(t.shape[1:]) for name, t in zip(OUTPUT_NAMES, example_outputs, strict=True)}
    )
    logger.info("exported FaceXFormer %s to %s (opset %d)", model.config.backbone, path, opset)
    return path


def _fix_output_dims(path: Path, dims: Mapping[str, list[int]]) -> None:
    """Write the static non-batch output dims into the graph (tracing leaves them symbolic)."""
    import onnx  # noqa: PLC0415 - only the exporter needs it (a GPU bench runs with torch alone)

    graph_model = onnx.load(str(path))
    for output in graph_model.graph.output:
        shape = output.type.tensor_type.shape
        for axis, size in enumerate(dims[output.name], start=1):
            shape.dim[axis].Clear()
            shape.dim[axis].dim_value = size
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
