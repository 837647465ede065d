"""Prompt-conditioned mask decoder: prompt queries read multi-scale image tokens, then score every voxel."""

from __future__ import annotations

import copy
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


def _fourier_positions(grid: tuple[int, ...], frequencies: int, device) -> torch.Tensor:
    """Sin/cos features of token centres in [-1, 1], padded to 3 axes so 2D and 3D share weights.

    Coordinates are relative to the patch, so tokens of every scale that cover the same place
    get the same position, whatever their grid size.
    """
    axes = [torch.linspace(-1, 1, n, device=device) if n > 1 else torch.zeros(1, device=device) for n in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid))
    coords = F.pad(coords, (0, 3 - len(grid)))
    scales = (2.0 ** torch.arange(frequencies, device=device)) * math.pi
    angles = coords[..., None] * scales
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(1)


class PromptMaskDecoder(nn.Module):
    """Refines prompt queries against image tokens, then takes their dot product with per-voxel
    features (as SAT does), so one backbone pass serves any number of prompts.

    Image tokens come from one or more feature maps (``memory``). With several, decoder layer
    ``i`` cross-attends to map ``i mod n`` with a learnt level embedding, as Mask2Former cycles
    through its scales: the queries read the coarse, semantic bottleneck as well as finer
    decoder stages. Maps larger than ``token_grid`` per axis are average-pooled to it, which
    bounds the attention cost at any patch size. Without ``memory`` the backbone's output
    features (pooled) are the only scale, which works for any backbone that returns a feature map.

    Prompts do not attend to each other: each query's self-attention sees itself only, so a
    prompt's mask is the same asked alone, with its task's structures or with any other set
    (``benchmarks/DECISIONS.md``, "prompt attention").

    In experiments the decoder is given as a factory (``class_path`` + the settings below): the
    segmenter builds it with ``feature_channels``, ``embed_dim`` and ``memory_channels`` read off
    its backbone and prompt encoder, so those sizes are never typed twice (see ``DecoderFactory``).

    Args:
        feature_channels: channels of the backbone's per-voxel output features (the dot product).
        embed_dim: size of prompt embeddings and of the decoder.
        memory_channels: channels of each multi-scale feature map the segmenter passes as
            ``memory`` (in its ``feature_layers`` order, coarse to fine); ``None``: the single
            scale of the output features.
        num_layers: transformer decoder layers (cross-attention to the image tokens). Use a multiple of the number of scales so each is read equally.
        num_heads: attention heads.
        token_grid: largest token grid per axis of one scale.
        position_frequencies: Fourier frequencies of the token positional encoding.
    """

    def __init__(self, feature_channels: int, embed_dim: int, memory_channels: list[int] | None = None,
                 num_layers: int = 2, num_heads: int = 4, token_grid: int = 8, position_frequencies: int = 4):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if min(feature_channels, num_layers, token_grid, position_frequencies) < 1:
            raise ValueError("feature_channels, num_layers, token_grid and position_frequencies must be >= 1")
        if memory_channels is not None and (not memory_channels or min(memory_channels) < 1):
            raise ValueError(f"memory_channels must be a non-empty list of positive channel counts, got {memory_channels}")
        self.feature_channels = feature_channels
        self.multiscale = memory_channels is not None
        self.memory_channels = list(memory_channels) if self.multiscale else [feature_channels]
        self.token_grid = token_grid
        self.position_frequencies = position_frequencies
        self.token_proj = nn.ModuleList(nn.Linear(channels, embed_dim) for channels in self.memory_channels)
        # which scale a token comes from (one scale needs no such embedding)
        self.level_embedding = nn.Parameter(torch.zeros(len(self.memory_channels), embed_dim)) if self.multiscale else None
        self.position_proj = nn.Linear(3 * 2 * position_frequencies, embed_dim)
        layer = nn.TransformerDecoderLayer(embed_dim, num_heads, dim_feedforward=4 * embed_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        # copies of one initialised layer, as torch's nn.TransformerDecoder builds its stack
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dim)
        self.to_kernel = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, feature_channels))
        self.to_bias = nn.Linear(embed_dim, 1)

    def _tokens(self, level: int, feature_map: torch.Tensor) -> torch.Tensor:
        spatial = feature_map.shape[2:]
        grid = tuple(min(self.token_grid, n) for n in spatial)
        if grid != tuple(spatial):
            pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
            feature_map = pool(feature_map, grid)
        tokens = self.token_proj[level](feature_map.flatten(2).transpose(1, 2))
        positions = self.position_proj(_fourier_positions(grid, self.position_frequencies, feature_map.device))
        tokens = tokens + positions
        return tokens + self.level_embedding[level] if self.level_embedding is not None else tokens

    def _logits(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        queries = self.norm(queries)
        kernels = self.to_kernel(queries)
        logits = torch.einsum("bpf,bf...->bp...", kernels, features) / math.sqrt(self.feature_channels)
        return logits + self.to_bias(queries).view(*queries.shape[:2], *([1] * (features.ndim - 2)))

    def forward(self, features: torch.Tensor, queries: torch.Tensor, padding: torch.Tensor | None = None,
                memory: list[torch.Tensor] | None = None, all_layers: bool = False):
        """``features [B, F, *S]``, ``queries [B, P, D]``, ``padding [B, P]`` -> logits ``[B, P, *S]``.

        Args:
            padding: which prompts are padding; not needed here (no prompt attends to another),
                accepted so every decoder is called alike.
            memory: the multi-scale feature maps (required when built with ``memory_channels``).
            all_layers: return the logits after every decoder layer (a list, last = final), for
                deep supervision; otherwise only the final logits.
        """
        if features.shape[1] != self.feature_channels:
            raise ValueError(f"backbone gives {features.shape[1]} feature channels, decoder expects {self.feature_channels}")
        if self.multiscale != (memory is not None):
            raise ValueError("the decoder was built with memory_channels, so it needs memory feature maps (and only then)")
        maps = memory if memory is not None else [features]
        channels = [m.shape[1] for m in maps]
        if channels != self.memory_channels:
            raise ValueError(f"memory feature maps have {channels} channels, decoder expects {self.memory_channels}")
        tokens = [self._tokens(level, m) for level, m in enumerate(maps)]
        # each query attends only to itself (True = not attended), so no prompt reads another;
        # a padding mask would then leave a padded query nothing to attend to (NaN), so none is passed
        self_mask = ~torch.eye(queries.shape[1], dtype=torch.bool, device=queries.device)
        outputs = []
        for index, layer in enumerate(self.layers):
            queries = layer(queries, tokens[index % len(tokens)], tgt_mask=self_mask)
            if all_layers or index == len(self.layers) - 1:
                outputs.append(self._logits(queries, features))
        return outputs if all_layers else outputs[-1]


# The decoder as the segmenter receives it: called with (feature_channels, embed_dim,
# memory_channels), which the segmenter reads off its backbone and prompt encoder; in YAML a
# ``class_path`` with only the remaining settings (as Lightning's OptimizerCallable).
DecoderFactory = Callable[[int, int, Optional[list[int]]], PromptMaskDecoder]
