"""The text-prompt-conditioned segmenter: image + prompts -> one mask logit map per prompt."""

from __future__ import annotations

import torch
from torch import nn

from networks.prompt_decoder import PromptMaskDecoder
from networks.prompt_encoder import TextPromptEncoder


class PromptSegmenter(nn.Module):
    """``(image [B, C, *S], prompt embeddings [B, P, D]) -> logits [B, P, *S]``, 2D or 3D.

    All prompts of a batch share one backbone pass; prompts are free text, so structures and
    phrasings unseen in training still run.

    Args:
        backbone: image network returning per-voxel features ``[B, feature_channels, *S]``, e.g.
            ``monai.networks.nets.SwinUNETR`` with ``out_channels = feature_channels``.
        prompt_encoder: text encoder producing ``[B, P, D]`` prompt embeddings.
        decoder: prompt-conditioned mask decoder.
    """

    def __init__(self, backbone: nn.Module, prompt_encoder: TextPromptEncoder, decoder: PromptMaskDecoder):
        super().__init__()
        self.backbone = backbone
        self.prompt_encoder = prompt_encoder
        self.decoder = decoder

    def encode_prompts(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt strings (``None`` = padding) -> embeddings ``[B, P, D]`` and padding mask ``[B, P]``."""
        return self.prompt_encoder(prompts)

    def forward(self, image: torch.Tensor, prompt_embeddings: torch.Tensor,
                prompt_padding: torch.Tensor | None = None) -> torch.Tensor:
        if image.ndim not in (4, 5):
            raise ValueError(f"image must be [B, C, H, W] or [B, C, X, Y, Z], got shape {tuple(image.shape)}")
        features = self.backbone(image)
        batch = image.shape[0]
        if prompt_embeddings.shape[0] == 1 and batch > 1:  # sliding windows of one case share its prompts
            prompt_embeddings = prompt_embeddings.expand(batch, -1, -1)
            prompt_padding = None if prompt_padding is None else prompt_padding.expand(batch, -1)
        return self.decoder(features, prompt_embeddings, prompt_padding)
