"""``care-cardiac phantoms``: write generated cardiac phantoms in the releases' layouts and codes."""

from __future__ import annotations

import argparse

from datamodules.phantoms import write_phantoms


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
