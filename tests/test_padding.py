"""Training patches and inference windows of a volume smaller than the patch are padded alike.

A 2D model saw LA slices (~95x72 voxels at 1.25 mm) padded to 96x96 with the volume's minimum in
training and with 0 at inference; it found a fraction of each atrium (benchmarks/DECISIONS.md, "one padding value"). These tests put
the window MONAI's SliceInferer hands the network next to the training patch of the same slice.
"""

import numpy as np
import torch
from monai.inferers import SliceInferer

from datamodules.case import Case
from datamodules.patches import PatchDataset
from datamodules.preprocessing import PAD_VALUE, PreprocessedCase


def small_case(shape=(40, 28, 6)) -> PreprocessedCase:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, *shape), generator=generator) * 3 - 2.5  # z-scored-like, minimum well below 0
    label = torch.zeros(shape, dtype=torch.int32)
    label[10:30, 8:20, :] = 255
    case = Case(case_id="x", task="la", center="c", modality="LGE", layout="lascarqs",
                image="x.nii.gz", label="y.nii.gz", split="train")
    affine = np.diag([1.25, 1.25, 5.0, 1.0])
    return PreprocessedCase(case=case, role="ID", image=image, label=label, affine=affine, slice_axis=2,
                            original_shape=shape, original_affine=affine)


def test_a_training_patch_of_a_small_slice_is_the_window_the_inferer_shows():
    case = small_case()
    patch = PatchDataset([case], [48, 48], foreground_fraction=1.0, augmentation=None)[0]["image"]
    assert patch.shape == (1, 48, 48)
    windows = []

    def network(window):
        windows.append(window.clone())
        return torch.zeros(window.shape[0], 1, *window.shape[2:])

    SliceInferer(roi_size=[48, 48], spatial_dim=2, sw_batch_size=64)(case.image[None], network)
    shown = torch.cat(windows)  # every slice of the case, as the network saw it
    matches = [torch.equal(window, patch) for window in shown]
    assert any(matches), "no inference window equals the training patch of the same slice"
    border = patch[0, :4, :]  # 48 - 40 = 8 rows of padding, 4 on each side
    assert torch.all(border == PAD_VALUE) and case.image.min() < PAD_VALUE - 1



class WindowRecorder(torch.nn.Module):
    """A stand-in network that keeps every window the module's inferer hands it."""

    def __init__(self):
        super().__init__()
        self.windows = []

    def encode_prompts(self, prompts):
        return torch.zeros(1, len(prompts[0]), 4), None

    def forward(self, image, prompt_embeddings, prompt_padding=None):
        self.windows.append(image.clone())
        return torch.zeros(image.shape[0], prompt_embeddings.shape[1], *image.shape[2:])
