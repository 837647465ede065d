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

    Multi-scale image features are read from named backbone submodules through forward hooks,
    so any MONAI network plugs in unchanged (no wrapper per architecture): for SwinUNETR
    ``[encoder10, decoder5, decoder4]`` are its 1/32, 1/16 and 1/8 stages; for DynUNet
    ``[bottleneck, upsamples.0, ...]``.

    Args:
        backbone: image network returning per-voxel features ``[B, feature_channels, *S]``, e.g.
            ``monai.networks.nets.SwinUNETR`` with ``out_channels = feature_channels``.
        prompt_encoder: text encoder producing ``[B, P, D]`` prompt embeddings.
        decoder: prompt-conditioned mask decoder; with ``feature_layers`` it must be built with
            one ``memory_channels`` entry per layer.
        feature_layers: names of backbone submodules (as in ``named_modules()``) whose outputs
            the prompt queries attend to, coarse to fine; ``None``: the pooled output features.
    """

    def __init__(self, backbone: nn.Module, prompt_encoder: TextPromptEncoder, decoder: PromptMaskDecoder,
                 feature_layers: list[str] | None = None):
        super().__init__()
        self.backbone = backbone
        self.prompt_encoder = prompt_encoder
        self.decoder = decoder
        self.feature_layers = list(feature_layers or [])
        names = {name for name, _ in backbone.named_modules() if name}
        missing = [name for name in self.feature_layers if name not in names]
        if missing:
            children = [name for name, _ in backbone.named_children()]
            raise ValueError(f"feature_layers {missing} are not submodules of {type(backbone).__name__}; "
                             f"its top-level modules are {children}")
        if bool(self.feature_layers) != decoder.multiscale or (
                decoder.multiscale and len(self.feature_layers) != len(decoder.memory_channels)):
            raise ValueError(f"feature_layers ({len(self.feature_layers)}) and the decoder's memory_channels "
                             f"({len(decoder.memory_channels) if decoder.multiscale else 'none'}) must match one to one")

    def encode_prompts(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt strings (``None`` = padding) -> embeddings ``[B, P, D]`` and padding mask ``[B, P]``."""
        return self.prompt_encoder(prompts)

    def _backbone(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Output features and, with ``feature_layers``, the hooked multi-scale maps."""
        if not self.feature_layers:
            return self.backbone(image), None
        captured: dict[str, torch.Tensor] = {}
        # hooks live for one pass only, so copies, pickles and checkpoints of the model carry none
        handles = [self.backbone.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: captured.__setitem__(name, output)) for name in self.feature_layers]
        try:
            features = self.backbone(image)
        finally:
            for handle in handles:
                handle.remove()
        bad = [name for name in self.feature_layers if not isinstance(captured.get(name), torch.Tensor)]
        if bad:
            raise ValueError(f"backbone submodules {bad} did not return one feature tensor during the forward pass")
        return features, [captured[name] for name in self.feature_layers]

    def forward(self, image: torch.Tensor, prompt_embeddings: torch.Tensor,
                prompt_padding: torch.Tensor | None = None, all_layers: bool = False):
        """Logits ``[B, P, *S]``; with ``all_layers`` a list of them, one per decoder layer (deep supervision)."""
        if image.ndim not in (4, 5):
            raise ValueError(f"image must be [B, C, H, W] or [B, C, X, Y, Z], got shape {tuple(image.shape)}")
        features, memory = self._backbone(image)
        batch = image.shape[0]
        if prompt_embeddings.shape[0] == 1 and batch > 1:  # sliding windows of one case share its prompts
            prompt_embeddings = prompt_embeddings.expand(batch, -1, -1)
            prompt_padding = None if prompt_padding is None else prompt_padding.expand(batch, -1)
        return self.decoder(features, prompt_embeddings, prompt_padding, memory=memory, all_layers=all_layers)
