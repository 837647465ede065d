"""``care-cardiac check``: read every file of an experiment's sources, report all problems at once,
and print the data's plan (nnU-Net's rules) beside the experiment's settings."""

from __future__ import annotations

import sys

import pandas as pd

from datamodules.checks import problems_of, summary_table
from datamodules.planning import plan
from lightning_modules.command_line.experiment import build_experiment


def check_main(argv: list[str]) -> int:
    """``care-cardiac check --config EXP.yaml [overrides]``: check every file of the experiment's
    sources, print one table per task x center and the data's plan (``datamodules.planning``),
    exit 1 listing all problems when any."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: care-cardiac check --config EXPERIMENT.yaml [--data.* overrides]\n"
              "Checks every image and label of the experiment's sources and prints a table per task x center.")
        return 0
    # the experiment is parsed exactly as fit parses it (same YAML, same overrides), then only
    # its datamodule is used
    cli = build_experiment(argv)
    try:
        reports = cli.datamodule.check()
    except ValueError as err:  # sources that cannot be read at all (folder, layout, modality)
        print(err, file=sys.stderr)
        return 1
    table = summary_table(reports)
    data = cli.datamodule
    planned = plan(reports, data.preprocessing, list(data.patch_size))
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False))
        if not planned.empty:
            print("\nplan from the training cases (nnU-Net's rules) next to this experiment's settings "
                  "(data.preprocessing.target_spacing, data.patch_size):")
            print(planned.to_string(index=False))
    problems = problems_of(reports)
    if problems:
        print(f"\n{len(problems)} problem(s):", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"\n{len(reports)} cases checked, no problems")
    return 0
