"""``care-cardiac``: the Lightning CLI (fit / validate / test / predict), the data check and the
phantom generator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from datamodules.checks import problems_of, summary_table
from datamodules.datamodule import CareDataModule
from datamodules.phantoms import write_phantoms
from lightning_modules.module import CardiacSegmentationModule


class CareCLI(LightningCLI):
    """Lightning CLI whose experiment YAMLs may interpolate values (OmegaConf parser mode)."""

    def add_arguments_to_parser(self, parser) -> None:
        # the image backbone's dimensionality follows the patch shape: typed once, in the data
        parser.link_arguments("data.patch_size", "model.net.init_args.backbone.init_args.spatial_dims", compute_fn=len)


class LoggedConfigCallback(SaveConfigCallback):
    """Lightning's config saving (``config.yaml`` in the run folder), plus: the resolved config is
    logged to every logger (W&B shows it as the run's config, so runs can be filtered by any
    setting) and kept on the module, which writes it into every checkpoint."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.already_saved and self.save_to_log_dir and not self.overwrite:
            log_dir = trainer.log_dir  # a collective under DDP: every rank asks
            if log_dir is not None:
                # a resumed run (same run folder) keeps the config it started with and adds
                # config-1.yaml, config-2.yaml...: nothing of the first run is overwritten
                stem, name, number = Path(self.config_filename).stem, self.config_filename, 0
                while (Path(log_dir) / name).exists():
                    number += 1
                    name = f"{stem}-{number}.yaml"
                self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        if hasattr(pl_module, "experiment_config"):
            pl_module.experiment_config = text
        config = yaml.safe_load(text)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


def experiment_classes() -> tuple[type, type]:
    """The LightningModule and LightningDataModule every subcommand parses experiments into."""
    return CardiacSegmentationModule, CareDataModule


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
    sources, print one table per task x center, exit 1 listing all problems when any."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: care-cardiac check --config EXPERIMENT.yaml [--data.* overrides]\n"
              "Checks every image and label of the experiment's sources and prints a table per task x center.")
        return 0
    # the experiment is parsed exactly as fit parses it (same YAML, same overrides), then only
    # its datamodule is used
    cli = CareCLI(CardiacSegmentationModule, CareDataModule, parser_kwargs={"parser_mode": "omegaconf"},
                  args=argv, run=False, save_config_callback=None)
    reports = cli.datamodule.check()
    table = summary_table(reports)
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False))
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
    if words[:1] == ["evaluate"]:
        from lightning_modules.evaluate_cli import evaluate_main

        return evaluate_main(words[1:])
    CareCLI(CardiacSegmentationModule, CareDataModule, parser_kwargs={"parser_mode": "omegaconf"}, args=argv,
            save_config_callback=LoggedConfigCallback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
