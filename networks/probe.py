"""What a backbone produces, found by running it once: its input channels, dimensionality and
the channels of its output and of any named stages.

The prompt decoder's sizes must agree with the backbone's. Reading them off the backbone (instead
of typing them a second time in YAML) works for any network, MONAI's or not, because it only
needs the first convolution and one forward pass on a small zero image.
"""

from __future__ import annotations

import torch
from torch import nn

# smallest inputs tried: SwinUNETR and 5-level U-Nets downsample 32x, and instance norm needs
# more than one voxel at the bottleneck
PROBE_SIZES = (64, 128)


class FeatureLayerError(ValueError):
    """A named feature layer gave no single tensor: a configuration error, not a probe-size one."""


def first_convolution(backbone: nn.Module) -> nn.Module:
    """The backbone's first 2D or 3D convolution (it fixes input channels and dimensionality)."""
    for module in backbone.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            return module
    raise ValueError(f"{type(backbone).__name__} has no Conv2d/Conv3d to read its input channels and dimensionality from")


def run_with_hooks(backbone: nn.Module, image: torch.Tensor, layers: list[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output of ``backbone(image)`` and the outputs of its submodules ``layers`` (forward hooks
    that live for this one pass only, so copies and checkpoints of the model carry none)."""
    captured: dict[str, torch.Tensor] = {}
    handles = [backbone.get_submodule(name).register_forward_hook(
        lambda module, args, output, name=name: captured.__setitem__(name, output)) for name in layers]
    try:
        output = backbone(image)
    finally:
        for handle in handles:
            handle.remove()
    bad = [name for name in layers if not isinstance(captured.get(name), torch.Tensor)]
    if bad:
        raise FeatureLayerError(f"backbone submodules {bad} did not return one feature tensor during the forward pass")
    return output, [captured[name] for name in layers]


def feature_channels(backbone: nn.Module, layers: list[str]) -> tuple[int, list[int]]:
    """Channels of the backbone's output and of each of ``layers``, from one pass (no gradients,
    eval mode; the training mode is restored) on a zero image."""
    convolution = first_convolution(backbone)
    dims = 2 if isinstance(convolution, nn.Conv2d) else 3
    parameter = next(backbone.parameters())
    was_training = backbone.training
    backbone.eval()
    failures = []
    try:
        for size in PROBE_SIZES:
            image = torch.zeros(1, convolution.in_channels, *([size] * dims), dtype=parameter.dtype, device=parameter.device)
            try:
                with torch.no_grad():
                    output, stages = run_with_hooks(backbone, image, layers)
            except FeatureLayerError:
                raise
            except (RuntimeError, ValueError) as err:  # too small for this network: try the next size
                failures.append(f"{size}: {err}")
                continue
            return output.shape[1], [stage.shape[1] for stage in stages]
    finally:
        backbone.train(was_training)
    raise ValueError(f"{type(backbone).__name__} did not run on a zero image of size {PROBE_SIZES} per axis "
                     f"to read its channels: {'; '.join(failures)}")
