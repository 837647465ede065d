"""The fixed-class baseline: the same backbone with one output channel per structure.

It answers the prompts a training batch carries by looking each one up in the vocabulary (every
phrasing of every structure, in every modality), so the LightningModule, loss and inferers are
shared with the prompt model and "text prompts vs fixed classes" is one ``model.net`` switch.
"""

from __future__ import annotations

import torch
from torch import nn

import vocabulary
from networks.probe import feature_channels


class FixedHeadSegmenter(nn.Module):
    """``image [B, C, *S]`` -> logits of the structures named by the prompts ``[B, P, *S]``.

    Args:
        backbone: image network with ``out_channels`` equal to the number of ``structures``
            (e.g. ``monai.networks.nets.SwinUNETR``).
        structures: structure keys, one per output channel (default: every structure of the
            vocabulary, in its order).
    """

    def __init__(self, backbone: nn.Module, structures: list[str] | None = None):
        super().__init__()
        self.structures = list(structures or vocabulary.STRUCTURES)
        unknown = [s for s in self.structures if s not in vocabulary.STRUCTURES]
        if unknown or len(set(self.structures)) != len(self.structures):
            raise ValueError(f"structures must be distinct vocabulary keys, got {self.structures}")
        output_channels, _ = feature_channels(backbone, [])
        if output_channels != len(self.structures):
            raise ValueError(f"the backbone gives {output_channels} output channels (its out_channels), but "
                             f"structures names {len(self.structures)}: one channel per structure")
        self.backbone = backbone
        channel = {key: index for index, key in enumerate(self.structures)}
        self._channel_of_text = {text: channel[key] for key, text in vocabulary.labelled_prompts() if key in channel}

    def encode_prompts(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt strings -> output channel indices ``[B, P]`` (padding: 0) and padding mask."""
        unknown = sorted({p for row in prompts for p in row if p is not None and p not in self._channel_of_text})
        if unknown:
            raise ValueError(f"the fixed-head model answers vocabulary prompts only; unknown: {unknown[:3]}")
        padding = torch.tensor([[p is None for p in row] for row in prompts])
        channels = torch.tensor([[0 if p is None else self._channel_of_text[p] for p in row] for row in prompts])
        return channels, padding

    def forward(self, image: torch.Tensor, prompt_embeddings: torch.Tensor,
                prompt_padding: torch.Tensor | None = None) -> torch.Tensor:
        """``prompt_embeddings`` are the channel indices from ``encode_prompts``."""
        if image.ndim not in (4, 5):
            raise ValueError(f"image must be [B, C, H, W] or [B, C, X, Y, Z], got shape {tuple(image.shape)}")
        logits = self.backbone(image)
        if logits.shape[1] != len(self.structures):
            raise ValueError(f"backbone gives {logits.shape[1]} channels for {len(self.structures)} structures")
        channels = prompt_embeddings.to(logits.device)
        if channels.shape[0] == 1 and logits.shape[0] > 1:  # sliding windows of one case share its prompts
            channels = channels.expand(logits.shape[0], -1)
        index = channels.view(*channels.shape, *([1] * (logits.ndim - 2))).expand(-1, -1, *logits.shape[2:])
        return torch.gather(logits, 1, index)
