"""Prompt-conditioned mask decoder: prompt queries read the image, then score every voxel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _fourier_positions(grid: tuple[int, ...], frequencies: int, device) -> torch.Tensor:
    """Sin/cos features of token centres in [-1, 1], padded to 3 axes so 2D and 3D share weights."""
    axes = [torch.linspace(-1, 1, n, device=device) if n > 1 else torch.zeros(1, device=device) for n in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid))
    coords = F.pad(coords, (0, 3 - len(grid)))
    scales = (2.0 ** torch.arange(frequencies, device=device)) * math.pi
    angles = coords[..., None] * scales
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(1)


class PromptMaskDecoder(nn.Module):
    """Refines prompt queries against image tokens, then takes their dot product with per-voxel
    features (as SAT does), so one backbone pass serves any number of prompts.

    Image tokens are the backbone's output features average-pooled to a small grid: this works
    for any backbone that returns a feature map (SwinUNETR, DynUNet...) in 2D or 3D.

    Args:
        feature_channels: channels of the backbone's per-voxel features.
        embed_dim: size of prompt embeddings and of the decoder.
        num_layers: transformer decoder layers (self-attention between prompts, cross-attention to the image).
        num_heads: attention heads.
        token_grid: pooled image-token grid size per axis.
        position_frequencies: Fourier frequencies of the token positional encoding.
    """

    def __init__(self, feature_channels: int, embed_dim: int = 128, num_layers: int = 2, num_heads: int = 4,
                 token_grid: int = 8, position_frequencies: int = 4):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if min(feature_channels, num_layers, token_grid, position_frequencies) < 1:
            raise ValueError("feature_channels, num_layers, token_grid and position_frequencies must be >= 1")
        self.feature_channels = feature_channels
        self.token_grid = token_grid
        self.position_frequencies = position_frequencies
        self.token_proj = nn.Linear(feature_channels, embed_dim)
        self.position_proj = nn.Linear(3 * 2 * position_frequencies, embed_dim)
        layer = nn.TransformerDecoderLayer(embed_dim, num_heads, dim_feedforward=4 * embed_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(embed_dim))
        self.to_kernel = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, feature_channels))
        self.to_bias = nn.Linear(embed_dim, 1)

    def forward(self, features: torch.Tensor, queries: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """``features [B, F, *S]``, ``queries [B, P, D]``, ``padding [B, P]`` -> logits ``[B, P, *S]``."""
        if features.shape[1] != self.feature_channels:
            raise ValueError(f"backbone gives {features.shape[1]} feature channels, decoder expects {self.feature_channels}")
        spatial = features.shape[2:]
        grid = tuple(min(self.token_grid, n) for n in spatial)
        pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
        tokens = pool(features, grid).flatten(2).transpose(1, 2)
        positions = self.position_proj(_fourier_positions(grid, self.position_frequencies, features.device))
        memory = self.token_proj(tokens) + positions
        refined = self.decoder(queries, memory, tgt_key_padding_mask=padding)
        kernels = self.to_kernel(refined)
        logits = torch.einsum("bpf,bf...->bp...", kernels, features) / math.sqrt(self.feature_channels)
        return logits + self.to_bias(refined).view(*refined.shape[:2], *([1] * len(spatial)))
