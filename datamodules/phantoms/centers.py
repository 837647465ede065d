"""Acquisition centers of the phantom benchmark: how each one differs, as real centers do."""

from __future__ import annotations

from dataclasses import dataclass, field

from datamodules.phantoms import anatomy as A

# Mean intensity of each tissue per contrast: CT in HU, MRI contrasts in scanner units.
CONTRASTS: dict[str, dict[int, float]] = {
    "CT": {A.OUTSIDE: -1000, A.LUNG: -820, A.BODY: 40, A.LV: 380, A.RV: 290, A.LA: 370, A.RA: 280, A.MYO: 110,
           A.AORTA: 400, A.PA: 300, A.SCAR: 95, A.EDEMA: 105, A.RV_WALL: 100},
    "MRI": {A.OUTSIDE: 5, A.LUNG: 40, A.BODY: 300, A.LV: 1000, A.RV: 950, A.LA: 980, A.RA: 940, A.MYO: 280,
            A.AORTA: 1000, A.PA: 950, A.SCAR: 300, A.EDEMA: 380, A.RV_WALL: 280},
    "LGE": {A.OUTSIDE: 5, A.LUNG: 30, A.BODY: 280, A.LV: 600, A.RV: 560, A.LA: 580, A.RA: 560, A.MYO: 90,
            A.AORTA: 600, A.PA: 560, A.SCAR: 1100, A.EDEMA: 160, A.RV_WALL: 120},
}


@dataclass(frozen=True)
class CenterProfile:
    """How one phantom center acquires images.

    Args:
        name: center name (folder name and table key).
        task: task key; decides layout, crop and labelled structures.
        modality: modality key written into the experiment (``CT``, ``MRI``, ``LGE``).
        layout: on-disk layout and label codes (``lascarqs``, ``mmwhs``, ``myops``).
        held_out: OOD center: only val/test cases are written, never training cases.
        axcodes: nominal orientation of the array axes (``RAS``, ``LPS``, ``LSP``...).
        spacing: voxel size in mm per array axis.
        fov: field of view in mm per array axis (slice count x spacing for stacks).
        oblique: degrees the grid is tilted off ``axcodes`` (0 = axis aligned).
        short_axis: grid is a short-axis stack (array axis 2 along the LV long axis).
        slices: (min, max) slice count of a short-axis stack.
        focus: ``heart`` (crop around the ventricles) or ``la`` (crop around the left atrium).
        contrast: key of ``CONTRASTS``.
        contrast_change: tissue -> multiplier of its mean intensity (a center's own look).
        noise: noise SD as a fraction of blood-pool intensity (CT: in HU).
        bias: strength of the smooth multiplicative bias field (0 = none).
        zscore_float: store z-scored float32 intensities (as the UA-MT LA release does).
        long_axis: RAS direction of the LV long axis (apex -> base) of this center's patients;
            ``None`` for the usual one. Short-axis stacks are cut across it, so it decides on
            which axis the thick slices land after reorientation (real MyoPS has LSP and PSR).
    """

    name: str
    task: str
    modality: str
    layout: str
    held_out: bool
    axcodes: str
    spacing: tuple[float, float, float]
    fov: tuple[float, float, float]
    oblique: float = 0.0
    short_axis: bool = False
    slices: tuple[int, int] = (0, 0)
    focus: str = "heart"
    contrast: str = "LGE"
    contrast_change: dict[int, float] = field(default_factory=dict)
    noise: float = 0.04
    bias: float = 0.2
    zscore_float: bool = False
    long_axis: tuple[float, float, float] | None = None


CENTERS: tuple[CenterProfile, ...] = (
    CenterProfile("la_utah", "la", "LGE", "lascarqs", False, "RAS", (1.25, 1.25, 1.25), (100, 100, 80),
                  focus="la", zscore_float=True),
    CenterProfile("la_beijing", "la", "LGE", "lascarqs", False, "LPS", (1.0, 1.0, 2.0), (100, 100, 80),
                  focus="la", noise=0.05, bias=0.3),
    CenterProfile("la_yale", "la", "LGE", "lascarqs", True, "RAS", (1.4, 1.4, 1.4), (110, 110, 90),
                  oblique=20, focus="la", noise=0.07, bias=0.4, contrast_change={A.LA: 0.8, A.LV: 0.8, A.BODY: 1.3}),
    CenterProfile("whs_ct_a", "whs", "CT", "mmwhs", False, "LPS", (1.5, 1.5, 2.0), (170, 170, 140),
                  contrast="CT", noise=25.0, bias=0.0),
    CenterProfile("whs_mr_a", "whs", "MRI", "mmwhs", False, "RAS", (1.6, 1.6, 1.6), (170, 170, 150),
                  oblique=15, contrast="MRI", noise=0.04, bias=0.3),
    CenterProfile("whs_ct_b", "whs", "CT", "mmwhs", True, "RAS", (1.2, 1.2, 2.5), (180, 180, 150),
                  contrast="CT", noise=40.0, bias=0.0, contrast_change={A.LV: 0.8, A.AORTA: 0.8, A.RV: 1.2, A.PA: 1.2}),
    CenterProfile("whs_mr_b", "whs", "MRI", "mmwhs", True, "LPS", (2.0, 2.0, 2.0), (180, 180, 160),
                  contrast="MRI", noise=0.06, bias=0.5, contrast_change={A.MYO: 1.3, A.BODY: 0.8}),
    CenterProfile("myops_c1", "myops", "LGE", "myops", False, "LSP", (1.25, 1.25, 10.0), (180, 180, 0),
                  short_axis=True, slices=(5, 7)),
    CenterProfile("myops_c2", "myops", "LGE", "myops", False, "PSR", (1.5, 1.5, 12.0), (190, 190, 0),
                  short_axis=True, slices=(4, 6), noise=0.05, bias=0.3, long_axis=(0.75, -0.45, 0.45)),
    CenterProfile("myops_c3", "myops", "LGE", "myops", True, "LSP", (1.0, 1.0, 8.0), (170, 170, 0),
                  short_axis=True, slices=(6, 8), noise=0.07, bias=0.4, contrast_change={A.SCAR: 0.8, A.MYO: 1.4}),
)
