"""A trained model and its data, as a benchmark script asks for them, shared by the probes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchio as tio


def mask_on_grid(batch: dict, mask: np.ndarray) -> np.ndarray:
    """A mask on the case's original grid -> the same mask on its preprocessed grid (nearest neighbour)."""
    label = tio.LabelMap(tensor=torch.from_numpy(mask.astype(np.uint8))[None], affine=batch["original_affine"])
    grid = (tuple(batch["image"].shape[2:]), batch["affine"])
    return tio.Resample(grid)(label).data[0].numpy() > 0


def trained_experiment(argv: list[str] | None, parser: argparse.ArgumentParser):
    """Parse ``--config`` (repeatable), ``--ckpt_path`` and ``--split`` with ``parser``'s own
    options; build the experiment (other options go to the Lightning CLI), load the checkpoint's
    weights, refusing one whose network settings differ, and set up the split's data.
    Returns ``(args, cli)``."""
    from lightning_modules.command_line.experiment import build_experiment
    from lightning_modules.inference.checkpoint_weights import (
        experiment_settings,
        load_weights,
    )

    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    args, overrides = parser.parse_known_args(argv)
    cli = build_experiment([w for c in args.config for w in ("--config", c)] + overrides)
    load_weights(cli.model, Path(args.ckpt_path), experiment_settings(cli))
    cli.model.eval()
    cli.datamodule.setup("validate" if args.split == "val" else "test")
    return args, cli
