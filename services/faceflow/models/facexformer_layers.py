"""Building blocks of the FaceXFormer decoder, checkpoint-compatible with the authors' release.

FaceXFormer (Narayan et al., "FaceXFormer: A Unified Transformer for Facial Analysis") fuses
multi-scale Swin features into one 256-channel map and lets a set of learned task tokens attend to
it through a two-way transformer (the SAM mask-decoder design). This module holds the layers below
the model: the attention blocks, the token decoder with its eight task heads, the random-Fourier
positional encoding and the per-scale projections.

Attribute names are part of the checkpoint format: every ``self.<name>`` below appears in the
released state-dict keys (``face_decoder.transformer.layers.0.self_attn.q_proj.weight``, ...), so
renaming one breaks loading the official weights. Nothing here keeps state between calls: each
``forward`` is a pure function of its inputs and the parameters, so one module may serve several
threads at once, and every ``forward`` traces for ONNX export and compiles with TorchScript.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "Attention",
    "FaceDecoder",
    "FaceXFormerOutput",
    "FeatureProjection",
    "LayerNorm2d",
    "MLPBlock",
    "PositionEmbeddingRandom",
    "TaskMLP",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
]


class FaceXFormerOutput(NamedTuple):
    """Raw outputs of every task head for a batch of B faces (see DESIGN.md, "Model semantics")."""

    landmarks: Tensor  # [B, 136]: 68 (x, y) points in [-1, 1] crop coordinates
    head_pose: Tensor  # [B, 3]: pitch, yaw, roll in radians
    attributes: Tensor  # [B, 40]: CelebA attribute logits
    visibility: Tensor  # [B, 29]: COFW occlusion logits
    age: Tensor  # [B, 8]: age-bin logits
    gender: Tensor  # [B, 2]: gender logits
    race: Tensor  # [B, 5]: race logits
    parsing: Tensor  # [B, 11, H, W] at the input size (224x224): face-parsing logits


class TaskMLP(nn.Module):
    """A plain MLP with ReLU between its linear layers (the authors' ``MLP``; keys ``layers.<i>``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"expected num_layers >= 1, got {num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims_in, dims_out, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < self.num_layers - 1:
                x = torch.relu(x)
        return x


class MLPBlock(nn.Module):
    """The transformer block's feed-forward layer: ``lin2(act(lin1(x)))``."""

    def __init__(self, embedding_dim: int, mlp_dim: int, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin2(self.act(self.lin1(x)))
        return out


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an NCHW tensor (ConvNeXt / detectron2 style)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if downsample_rate < 1 or internal_dim % num_heads != 0:
            raise ValueError(
                "expected num_heads to divide embedding_dim // downsample_rate, "
                f"got num_heads={num_heads}, embedding_dim={embedding_dim}, "
                f"downsample_rate={downsample_rate}"
            )
        self.embedding_dim = embedding_dim
        self.internal_dim = internal_dim
        self.num_heads = num_heads
        self.head_dim_sqrt = math.sqrt(internal_dim // num_heads)
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _separate_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _recombine_heads(self, x: Tensor) -> Tensor:
        b, n_heads, n_tokens, c_per_head = x.shape
        return x.transpose(1, 2).reshape(b, n_tokens, n_heads * c_per_head)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        attn = torch.softmax((q @ k.transpose(2, 3)) / self.head_dim_sqrt, dim=-1)
        out: Tensor = self.out_proj(self._recombine_heads(attn @ v))
        return out


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, MLP, then image-to-token attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            # The first block replaces the queries by their self-attention (no residual, no PE).
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """A stack of :class:`TwoWayAttentionBlock` plus a final token-to-image attention."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(index == 0),
            )
            for index in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(tokens [B,N,C], image tokens [B,HW,C])`` for an image embedding [B,C,H,W]."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q = queries + tokens
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding of a pixel grid with random spatial frequencies (stored in the checkpoint)."""

    if TYPE_CHECKING:  # a registered buffer; declared here for type checkers only (TorchScript-safe)
        positional_encoding_gaussian_matrix: Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def forward(self, height: int, width: int) -> Tensor:
        """Return the encoding of an ``height x width`` grid as [2*num_pos_feats, height, width]."""
        gaussian = self.positional_encoding_gaussian_matrix
        grid = torch.ones((height, width), device=gaussian.device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / height
        x_embed = (grid.cumsum(dim=1) - 0.5) / width
        coords = 2.0 * torch.stack([x_embed, y_embed], dim=-1) - 1.0
        # Computed in fp32 and cast to the module's dtype, so a model.half() forward works too
        # (both casts are no-ops for fp32, so the exported ONNX graph is unchanged).
        coords = (2.0 * math.pi) * (coords @ gaussian.float())
        encoding = torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)
        return encoding.to(gaussian.dtype)


class FeatureProjection(nn.Module):
    """Projects one backbone scale [B,C,H,W] to decoder tokens [B,H*W,out_dim] (key ``proj``)."""

    def __init__(self, input_dim: int, output_dim: int = 256) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.proj(x.flatten(2).transpose(1, 2))
        return out


class FaceDecoder(nn.Module):
    """Task tokens attend to the fused image embedding; one head per task, plus a parsing hypernetwork.

    Token order (landmarks, pose, attribute, visibility, age, gender, race, then 11 mask tokens) is
    fixed by the checkpoint. ``forward`` always computes every head.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_mask_tokens: int = 11,
        head_dims: tuple[int, int, int, int, int, int, int] = (136, 3, 40, 29, 8, 2, 5),
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        dim = transformer_dim
        self.transformer_dim = dim
        self.transformer = transformer
        self.landmarks_token = nn.Embedding(1, dim)
        self.pose_token = nn.Embedding(1, dim)
        self.attribute_token = nn.Embedding(1, dim)
        self.visibility_token = nn.Embedding(1, dim)
        self.age_token = nn.Embedding(1, dim)
        self.gender_token = nn.Embedding(1, dim)
        self.race_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(num_mask_tokens, dim)

        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            activation(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetwork_mlps = TaskMLP(dim, dim, dim // 8, 3)

        landmarks, pose, attributes, visibility, age, gender, race = head_dims
        self.landmarks_prediction_head = TaskMLP(dim, dim, landmarks, 3)
        self.pose_prediction_head = TaskMLP(dim, dim, pose, 3)
        self.attribute_prediction_head = TaskMLP(dim, dim, attributes, 3)
        self.visibility_prediction_head = TaskMLP(dim, dim, visibility, 3)
        self.age_prediction_head = TaskMLP(dim, dim, age, 3)
        self.gender_prediction_head = TaskMLP(dim, dim, gender, 3)
        self.race_prediction_head = TaskMLP(dim, dim, race, 3)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor) -> FaceXFormerOutput:
        """Decode [B,C,H,W] embeddings with a [1,C,H,W] positional encoding into every head."""
        b, c, h, w = image_embeddings.shape
        task_tokens = torch.cat(
            [
                self.landmarks_token.weight,
                self.pose_token.weight,
                self.attribute_token.weight,
                self.visibility_token.weight,
                self.age_token.weight,
                self.gender_token.weight,
                self.race_token.weight,
                self.mask_tokens.weight,
            ],
            dim=0,
        )
        tokens = task_tokens.unsqueeze(0).expand(b, -1, -1)
        pos = image_pe.expand(b, -1, -1, -1)
        hs, src = self.transformer(image_embeddings, pos, tokens)

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = self.output_hypernetwork_mlps(hs[:, 7:, :])
        # One mask per token: dot product of its hypernetwork vector with every upscaled pixel.
        up_c, up_h, up_w = upscaled.shape[1], upscaled.shape[2], upscaled.shape[3]
        parsing = (hyper_in @ upscaled.reshape(b, up_c, up_h * up_w)).reshape(b, -1, up_h, up_w)

        return FaceXFormerOutput(
            landmarks=self.landmarks_prediction_head(hs[:, 0, :]),
            head_pose=self.pose_prediction_head(hs[:, 1, :]),
            attributes=self.attribute_prediction_head(hs[:, 2, :]),
            visibility=self.visibility_prediction_head(hs[:, 3, :]),
            age=self.age_prediction_head(hs[:, 4, :]),
            gender=self.gender_prediction_head(hs[:, 5, :]),
            race=self.race_prediction_head(hs[:, 6, :]),
            parsing=parsing,
        )
