"""Building an experiment from YAML files and overrides: the Lightning CLI as every subcommand
(``fit``/``validate``/``test``, ``check``, ``predict``) parses it.

- Interpolations (``${trainer.max_epochs}``, ``${oc.env:VAR,default}``) are resolved once, after
  every ``--config`` and every command-line or sweep override is merged (jsonargparse's
  ``omegaconf+`` mode), so an override reaches every value derived from it.
- Values that must agree are linked or derived here, never typed twice: the inferer's window
  is the patch size, the backbone's dimensionality is the number of patch sizes (the decoder's
  sizes are read off the backbone and prompt encoder by the segmenter itself).
- Progress: Lightning's rich bar on a terminal, plain log lines elsewhere.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path
from typing import Optional

import yaml
from jsonargparse import Namespace, set_parsing_settings
from jsonargparse.typing import import_object
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from datamodules.datamodule import CareDataModule
from datamodules.preprocessing import PAD_VALUE
from lightning_modules.command_line.experiment_files import expand_configs
from lightning_modules.command_line.progress_bar import progress_bar
from lightning_modules.evaluation.reporting import ResultTables, WandbOverlays
from lightning_modules.evaluation.results_io import unused_path
from lightning_modules.evaluation.worst_cases import WorstCaseOverlays
from lightning_modules.inference.predictor import default_inferer
from lightning_modules.training.module import CardiacSegmentationModule
from lightning_modules.training.validation_schedule import ValidationSchedule

PARSER_MODE = "omegaconf+"
# experiment YAMLs write absolute interpolation paths (${trainer.max_epochs}); omegaconf+ resolves
# them against the whole command, where they live under the subcommand (fit.trainer...)
set_parsing_settings(omegaconf_absolute_to_relative_paths=True)


class CareCLI(LightningCLI):
    """Lightning CLI for the experiments: late-resolved interpolations, linked and derived settings,
    progress reporting. ``run=False`` builds the experiment without running it (``check``,
    ``predict``, tests)."""

    def __init__(self, *args, **kwargs):
        # the main parser's mode is also its subcommands' (fit, validate, test)
        kwargs["parser_kwargs"] = {"parser_mode": PARSER_MODE, **kwargs.get("parser_kwargs", {})}
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # callbacks every experiment has, configured under their own keys (``--results.leaderboard_path``,
        # ``--overlays.cases``, ``--worst_cases.cases``, ``--validation.every_n_epochs``), as Lightning adds ModelCheckpoint
        parser.add_lightning_class_args(ResultTables, "results")
        parser.add_lightning_class_args(WandbOverlays, "overlays")
        parser.add_lightning_class_args(WorstCaseOverlays, "worst_cases")
        parser.add_lightning_class_args(ValidationSchedule, "validation")
        parser.add_argument("--experiment", type=str, default="experiment",
                            help="the experiment's name: run folders results/<experiment>/<run id>, W&B group")
        parser.add_argument("--base", type=Optional[str], default=None,
                            help="the experiment this file overlays (beside it, else a shipped one), read before it")
        for source, target in LINKS:
            parser.link_arguments(source, target)

    def parse_arguments(self, parser, args) -> None:
        # jsonargparse drops a value typed for a link target without a word; refuse it instead
        words = sys.argv[1:] if args is None else list(args) if not isinstance(args, dict) else []
        for source, target in LINKS:
            if _sets(words, target):
                parser.error(f"{target} is linked from {source} (they must agree): leave it out, set {source}")
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        try:
            derive_settings(self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config)
        except ValueError as err:  # a usage error: the message, not a traceback
            self._parser(self.subcommand).error(str(err))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # an experiment that names no inferer gets the one for its patch here, once, so every use
        # of a built experiment (fit, predict, the prompt probe, benchmarks) infers alike
        if self.model.inferer is None:
            self.model.inferer = default_inferer(self.datamodule.patch_size)

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        wants_bar = config.get("enable_progress_bar") is not False
        if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, progress_bar()]
        return super().instantiate_trainer(**kwargs)


# (source, target): the target always takes the source's value
LINKS = [("data.patch_size", "model.inferer.init_args.roi_size")]  # sliding windows are training-patch sized


def _sets(words: list[str], key: str) -> bool:
    """Whether a command line (overrides, or any ``--config`` YAML it names) gives ``key``."""
    for index, word in enumerate(words):
        if word == f"--{key}" or word.startswith(f"--{key}="):
            return True
        path = word.split("=", 1)[1] if word.startswith("--config=") else (
            words[index + 1] if word == "--config" and index + 1 < len(words) else None)
        if path is not None and Path(path).is_file():
            node = yaml.safe_load(Path(path).read_text())
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                return True
    return False


def class_default(class_path: str, key: str):
    """The default of ``key`` in the constructor of ``class_path`` (``None`` where it has none)."""
    parameter = inspect.signature(import_object(class_path)).parameters.get(key)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _derive(owner: Namespace, key: str, value, source: str, target: str, class_path: str) -> None:
    """Set a value derived from another setting, refusing a different one typed by hand (a value
    other than the class's own default, which the parser fills in when nothing was typed)."""
    given = owner.get(key)
    if given is not None and given != class_default(class_path, key) and given != value:
        raise ValueError(f"{target} is {given!r}, but {source} makes it {value!r}: it is derived, leave it out")
    owner[key] = value


def derive_settings(config: Namespace) -> None:
    """Settings computed from others before anything is built (an override of the source reaches them).

    - ``model.net.init_args.backbone.init_args.spatial_dims`` = the number of ``data.patch_size``
      entries (2: a 2D model applied slice by slice, 3: a 3D model). Done here because
      jsonargparse's links do not reach init_args nested two classes deep in ``omegaconf+`` mode.
    - The inferer matches the patch (slices for 2D, windows for 3D) and pads as training did.
    """
    patch = list(config.data.patch_size)
    backbone = config.get("model.net.init_args.backbone")
    if backbone is not None and "spatial_dims" in backbone.init_args:
        _derive(backbone.init_args, "spatial_dims", len(patch), "data.patch_size",
                "model.net.init_args.backbone.init_args.spatial_dims", backbone.class_path)
    inferer = config.get("model.inferer")
    if inferer is not None and inferer.get("class_path", "").endswith("SliceInferer"):
        # SliceInferer's windows are 2D slices: a 3D patch cannot drive it
        if len(patch) != 2:
            raise ValueError(f"model.inferer is a SliceInferer (2D windows), but data.patch_size {patch} is 3D; "
                             "use monai.inferers.SlidingWindowInferer for 3D patches")
    elif inferer is not None and len(patch) == 2:
        raise ValueError(f"model.inferer is {inferer.get('class_path')}, but data.patch_size {patch} is 2D; "
                         "use monai.inferers.SliceInferer (spatial_dim: 2) for 2D patches")
    if inferer is not None:
        # windows past the volume must be filled as training patches were (PAD_VALUE)
        options = inferer.get("init_args") or Namespace()
        if options.get("padding_mode") not in (None, "constant") or options.get("cval") not in (None, PAD_VALUE):
            raise ValueError(f"model.inferer pads with padding_mode={options.get('padding_mode')!r}, "
                             f"cval={options.get('cval')!r}, but training patches are padded with the constant "
                             f"{PAD_VALUE} (datamodules.preprocessing.PAD_VALUE): leave both out")


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
                name = unused_path(Path(log_dir) / self.config_filename).name
                self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        if hasattr(pl_module, "experiment_config"):
            pl_module.experiment_config = text
        config = yaml.safe_load(text)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


def _expanded(args: list[str]) -> list[str]:
    try:
        return expand_configs(args)
    except ValueError as err:  # a broken chain of bases: the message, not a traceback
        raise SystemExit(f"care-cardiac: {err}") from None


def build_experiment(args: list[str]) -> CareCLI:
    """The experiment of ``args`` (``--config`` files and overrides, no subcommand), built but not run."""
    return CareCLI(CardiacSegmentationModule, CareDataModule, args=_expanded(args), run=False,
                   save_config_callback=None)


def run_cli(args: list[str]) -> None:
    """``fit``/``validate``/``test`` with the experiment's YAMLs and overrides."""
    # the command line is passed as args, expanded (experiment_files): Lightning's warning that
    # sys.argv holds words too is about a mistake this is not
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    CareCLI(CardiacSegmentationModule, CareDataModule, args=_expanded(args), save_config_callback=LoggedConfigCallback)
