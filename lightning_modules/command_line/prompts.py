"""``care-cardiac prompts``: score each structure asked alone, with its task's prompts, with
held-out phrasings, and structures absent from the images (``lightning_modules.evaluation.prompt_probe``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import vocabulary
from datamodules.collate import collate_volume
from datamodules.volumes import VolumeDataset
from lightning_modules.evaluation.prompt_probe import (
    DEFAULT_ABSENT,
    HELDOUT_PROMPTS,
    case_rows,
    summary,
)
from lightning_modules.evaluation.results_io import unused_path, write_csv_atomic


def prompts_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="care-cardiac prompts",
        description="Score each structure asked alone, with its task's prompts, in held-out phrasings, and "
                    "where absent. Extra words are experiment overrides (--data.*, --model.*).")
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable)")
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--output", required=True, help="CSV to write (a new name is chosen if it exists)")
    parser.add_argument("--heldout", default=str(HELDOUT_PROMPTS),
                        help="YAML of held-out phrasings (default: the final list; choose settings on "
                             "vocabulary/heldout_prompts_selection.yaml)")
    parser.add_argument("--absent", nargs="*", default=DEFAULT_ABSENT, help="TASK:STRUCTURE asked where absent")
    args, overrides = parser.parse_known_args(argv)
    from lightning_modules.command_line.experiment import build_experiment
    from lightning_modules.inference.checkpoint_weights import (
        experiment_settings,
        load_weights,
    )

    for entry in args.absent:
        if entry.count(":") != 1 or entry.split(":")[1] not in vocabulary.STRUCTURES:
            parser.error(f"--absent {entry!r}: write TASK:STRUCTURE with a known structure")
    checkpoint = Path(args.ckpt_path).expanduser()
    if not checkpoint.is_file():
        parser.error(f"--ckpt_path {checkpoint} is not a file")
    cli = build_experiment([w for c in args.config for w in ("--config", c)] + overrides)
    datamodule, model = cli.datamodule, cli.model
    try:
        load_weights(model, checkpoint, experiment_settings(cli))
    except ValueError as err:
        parser.error(str(err))
    model.eval()
    datamodule.setup("validate" if args.split == "val" else "test")
    rows = []
    for item in VolumeDataset(datamodule.cases(args.split)):
        rows += case_rows(model.predictor, collate_volume([item]), Path(args.heldout), args.absent)
        print(f"{item['case_id']} ({item['modality']}): {len(rows)} rows", flush=True)
    frame = pd.DataFrame(rows)
    path = write_csv_atomic(frame, unused_path(args.output))
    with pd.option_context("display.max_columns", None, "display.width", 220, "display.precision", 3):
        print(summary(frame).to_string(index=False))
    print(f"rows written to {path}")
    return 0
