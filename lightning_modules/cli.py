"""``care-cardiac``: the Lightning CLI (fit / validate / test / predict), the data check and the
phantom generator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from datamodules.checks import problems_of, summary_table
from datamodules.planning import plan
from datamodules.phantoms import write_phantoms
from lightning_modules.experiment import build_experiment, run_cli


def phantoms_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="care-cardiac phantoms",
                                     description="Write a phantom CARE-Cardiac dataset in the real layouts.")
    parser.add_argument("--out", required=True, help="new folder to create (never overwritten)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases-per-center", type=int, default=8, help="training cases per in-distribution center")
    parser.add_argument("--eval-cases", type=int, default=2, help="test cases per center")
    parser.add_argument("--val-cases", type=int, default=None, help="validation cases per center (default: --eval-cases)")
    args = parser.parse_args(argv)
    try:
        out = write_phantoms(args.out, seed=args.seed, cases_per_center=args.cases_per_center,
                             eval_cases=args.eval_cases, val_cases=args.val_cases)
    except (FileExistsError, ValueError) as err:
        parser.error(str(err))
    print(f"phantoms written to {out}")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["phantoms"]:
        return phantoms_main(words[1:])
    if words[:1] == ["check"]:
        return check_main(words[1:])
    if words[:1] == ["predict"]:
        from lightning_modules.predict_cli import predict_main

        return predict_main(words[1:])
    if words[:1] == ["prompts"]:
        from lightning_modules.prompt_robustness import prompts_main

        return prompts_main(words[1:])
    if words[:1] == ["evaluate"]:
        from lightning_modules.evaluate_cli import evaluate_main

        return evaluate_main(words[1:])
    run_cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
