"""The text-prompt-conditioned segmenter: image + prompts -> one mask logit map per prompt."""

from __future__ import annotations

import torch
from torch import nn

from networks.probe import feature_channels, run_with_hooks
from networks.prompt_decoder import DecoderFactory
from networks.prompt_encoder import TextPromptEncoder


def _per_window(embeddings: torch.Tensor, padding: torch.Tensor | None, batch: int):
    """One case's prompts ``[1, P, D]`` repeated for each of its ``batch`` sliding windows."""
    if embeddings.shape[0] == 1 and batch > 1:
        embeddings = embeddings.expand(batch, -1, -1)
        padding = None if padding is None else padding.expand(batch, -1)
    return embeddings, padding


class PromptSegmenter(nn.Module):
    """``(image [B, C, *S], prompt embeddings [B, P, D]) -> logits [B, P, *S]``, 2D or 3D.

    All prompts of a batch share one backbone pass; prompts are free text, so structures and
    phrasings unseen in training still run.

    Multi-scale image features are read from named backbone submodules through forward hooks,
    so any MONAI network plugs in unchanged (no wrapper per architecture): for SwinUNETR
    ``[encoder10, decoder5, decoder4]`` are its 1/32, 1/16 and 1/8 stages; for DynUNet
    ``[bottleneck, upsamples.0, ...]``.

    Args:
        backbone: image network returning per-voxel features ``[B, feature_channels, *S]``, e.g.
            ``monai.networks.nets.SwinUNETR`` with ``out_channels = feature_channels``.
        prompt_encoder: text encoder producing ``[B, P, D]`` prompt embeddings.
        decoder: factory of the prompt-conditioned mask decoder (``PromptMaskDecoder`` settings
            such as ``num_layers``); it is built here with the backbone's output channels, the
            channels of each of ``feature_layers`` (read from one pass of the backbone on a small
            zero image) and the prompt encoder's ``embed_dim``, so none of them is typed twice.
        feature_layers: names of backbone submodules (as in ``named_modules()``) whose outputs
            the prompt queries attend to, coarse to fine; ``None``: the pooled output features.
    """

    def __init__(self, backbone: nn.Module, prompt_encoder: TextPromptEncoder, decoder: DecoderFactory,
                 feature_layers: list[str] | None = None):
        super().__init__()
        self.backbone = backbone
        self.prompt_encoder = prompt_encoder
        self.feature_layers = list(feature_layers or [])
        names = {name for name, _ in backbone.named_modules() if name}
        missing = [name for name in self.feature_layers if name not in names]
        if missing:
            children = [name for name, _ in backbone.named_children()]
            raise ValueError(f"feature_layers {missing} are not submodules of {type(backbone).__name__}; "
                             f"its top-level modules are {children}")
        output_channels, stage_channels = feature_channels(backbone, self.feature_layers)
        self.decoder = decoder(output_channels, prompt_encoder.embed_dim,
                               stage_channels if self.feature_layers else None)

    def encode_prompts(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt strings (``None`` = padding) -> embeddings ``[B, P, D]`` and padding mask ``[B, P]``."""
        return self.prompt_encoder(prompts)

    def _backbone(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Output features and, with ``feature_layers``, the hooked multi-scale maps."""
        if not self.feature_layers:
            return self.backbone(image), None
        return run_with_hooks(self.backbone, image, self.feature_layers)

    def forward(self, image: torch.Tensor, prompt_embeddings: torch.Tensor,
                prompt_padding: torch.Tensor | None = None, all_layers: bool = False):
        """Logits ``[B, P, *S]``; with ``all_layers`` a list of them, one per decoder layer (deep supervision)."""
        if image.ndim not in (4, 5):
            raise ValueError(f"image must be [B, C, H, W] or [B, C, X, Y, Z], got shape {tuple(image.shape)}")
        features, memory = self._backbone(image)
        prompt_embeddings, prompt_padding = _per_window(prompt_embeddings, prompt_padding, image.shape[0])
        return self.decoder(features, prompt_embeddings, prompt_padding, memory=memory, all_layers=all_layers)

    def forward_prompt_sets(self, image: torch.Tensor,
                            prompt_sets: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        """Logits of several prompt sets from one backbone pass, concatenated on the prompt axis.

        Each set is decoded on its own (its prompts attend to each other only), so set ``k``'s
        logits are ``forward(image, *prompt_sets[k])``: asking a structure alone, with its task
        and in other words costs one backbone pass instead of one per way of asking.
        """
        features, memory = self._backbone(image)
        return torch.cat([self.decoder(features, *_per_window(embeddings, padding, image.shape[0]), memory=memory)
                          for embeddings, padding in prompt_sets], 1)
