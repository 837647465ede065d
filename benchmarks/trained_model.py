"""A trained model and its data, as a benchmark script asks for them, shared by the probes."""

from __future__ import annotations

import argparse
from pathlib import Path


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
