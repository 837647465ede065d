"""nnU-Net's plain convolutional U-Net as a backbone: MONAI's ``DynUNet`` in nnU-Net's layout,
configured by depth and widths instead of per-stage lists (which would have to be retyped for
every depth and dimensionality)."""

from __future__ import annotations

from monai.networks.nets import DynUNet


class PlainUNet(DynUNet):
    """A DynUNet with nnU-Net's plan: 3x3(x3) convolutions, stride-2 downsampling after the first
    stage, instance norm, leaky ReLU, widths doubling from ``base_filters`` up to ``max_filters``.

    Measured against SwinUNETR as the prompt model's image encoder on the real sample cases
    (``benchmarks/RESULTS.md``, issue 13): faster per step on CPU and better on every structure.

    Args:
        spatial_dims: 2 or 3 (derived from ``data.patch_size`` by the CLI).
        in_channels: image channels.
        out_channels: per-voxel feature channels handed to the prompt decoder.
        levels: resolution stages (``levels - 1`` downsamplings): 6 takes a 96 or 128 patch down
            to 3-4 voxels, as nnU-Net plans for these sizes.
        base_filters: channels of the first stage (nnU-Net: 32; 16 halves the CPU cost).
        max_filters: cap of the channels (nnU-Net: 512 in 2D, 320 in 3D).
        res_block: residual blocks in each stage (nnU-Net's ResEnc variants).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 32, levels: int = 6,
                 base_filters: int = 16, max_filters: int = 256, res_block: bool = False):
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        if base_filters < 1 or max_filters < base_filters:
            raise ValueError(f"need 1 <= base_filters <= max_filters, got {base_filters}, {max_filters}")
        filters = [min(base_filters * 2 ** level, max_filters) for level in range(levels)]
        super().__init__(spatial_dims, in_channels, out_channels, kernel_size=[3] * levels,
                         strides=[1] + [2] * (levels - 1), upsample_kernel_size=[2] * (levels - 1),
                         filters=filters, norm_name="instance", res_block=res_block)
