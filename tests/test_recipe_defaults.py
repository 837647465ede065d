"""Class defaults are the adopted recipe: the real-sample experiment states its data and run
length only, and every setting it resolves to is the constructor default of the class it
configures; the other experiments are overlays of the same base."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml
from jsonargparse.typing import import_object

from datamodules.datamodule import CareDataModule
from lightning_modules.command_line.experiment_files import with_bases
from lightning_modules.training.module import CardiacSegmentationModule

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
# settings an experiment must give (its data), derived from others (experiment.derive_settings), or
# that say where files go rather than what is computed
NOT_RECIPE = {"data.sources", "data.splits", "model.net.init_args.backbone.init_args.spatial_dims", "data.cache_dir"}


def _default_of(default):
    """A constructor default as the parsed config writes it."""
    if dataclasses.is_dataclass(default):
        return {k: _default_of(v) for k, v in dataclasses.asdict(default).items()}
    lazy = getattr(default, "_lazy_class_type", None)  # jsonargparse's lazy_instance
    if lazy is not None:
        return {"class_path": f"{lazy.__module__}.{lazy.__qualname__}"}
    if isinstance(default, tuple):
        return [_default_of(v) for v in default]
    if isinstance(default, type) or callable(default) and not isinstance(default, (dict, list)):
        return {"class_path": f"{default.__module__}.{default.__qualname__}"}
    return default


def _differences(node: dict, cls, prefix: str) -> list[str]:
    """Settings under ``node`` (init arguments of ``cls``) that differ from ``cls``'s defaults, recursively."""
    found = []
    parameters = inspect.signature(cls).parameters
    for name, value in node.items():
        key = f"{prefix}.{name}"
        parameter = parameters.get(name)
        if key in NOT_RECIPE or parameter is None:
            continue
        default = parameter.default
        if isinstance(value, dict) and "class_path" in value:
            component = import_object(value["class_path"])
            if default is not inspect.Parameter.empty:
                expected = _default_of(default)
                named = import_object(expected["class_path"]) if isinstance(expected, dict) else None
                if named is not component:  # torch.optim.AdamW is torch.optim.adamw.AdamW
                    found.append(f"{key}: {value['class_path']} (default {expected})")
            found += _differences(value.get("init_args") or {}, component, f"{key}.init_args")
        elif default is inspect.Parameter.empty:
            continue  # a required component (net, backbone, ...): its own settings are checked above
        elif isinstance(value, dict) and dataclasses.is_dataclass(default):
            expected = _default_of(default)
            found += [f"{key}.{k}: {v!r} (default {expected.get(k)!r})" for k, v in value.items() if expected.get(k) != v]
        elif _default_of(default) != value:
            found.append(f"{key}: {value!r} (default {_default_of(default)!r})")
    return found


def _resolved(experiment: str) -> dict:
    from lightning_modules.command_line.experiment import build_experiment

    cli = build_experiment(["--config", str(EXPERIMENTS / experiment)])
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))


def test_the_real_recipe_is_the_class_defaults(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = _resolved("real_samples.yaml")
    differences = (_differences(config["model"], CardiacSegmentationModule, "model")
                   + _differences(config["data"], CareDataModule, "data"))
    assert differences == []
    # the overlay names its data, their splits and run length, nothing of the model or the loader
    overlay = yaml.safe_load((EXPERIMENTS / "real_samples.yaml").read_text())
    assert set(overlay) == {"base", "experiment", "trainer", "data"} and set(overlay["data"]) == {"sources", "splits"}


def test_a_changed_default_is_caught():
    # the check can fail: a value other than the default, nested in a component, is named
    node = {"net": {"class_path": "networks.segmenter.PromptSegmenter", "init_args": {
        "prompt_encoder": {"class_path": "networks.prompt_encoder.TextPromptEncoder",
                           "init_args": {"embedding_noise": 1.0}}}},
            "deep_supervision": False, "task_gradients": None}
    assert _differences(node, CardiacSegmentationModule, "model") == [
        "model.net.init_args.prompt_encoder.init_args.embedding_noise: 1.0 (default 0.0)",
        "model.deep_supervision: False (default True)",
        "model.task_gradients: None (default {'class_path': "
        "'lightning_modules.training.task_gradients.BalancedTaskGradients'})"]


@pytest.mark.parametrize("experiment", ["phantoms.yaml", "real_samples.yaml", "care_unified.yaml"])
def test_every_experiment_is_an_overlay_of_the_base(experiment):
    chain = with_bases(EXPERIMENTS / experiment)
    assert [p.name for p in chain] == ["base.yaml", experiment]
    overlay = yaml.safe_load((EXPERIMENTS / experiment).read_text())
    base = yaml.safe_load((EXPERIMENTS / "base.yaml").read_text())
    # an overlay never repeats the base's loggers or checkpoints
    assert "logger" not in overlay.get("trainer", {}) and "callbacks" not in overlay.get("trainer", {})
    assert overlay["experiment"] != base["experiment"]


def test_a_module_built_with_only_its_network_has_the_recipes_components_and_pickles():
    import pickle

    import torch

    from lightning_modules.inference.postprocessing import PostProcessing
    from lightning_modules.training.losses import PartialLabelLoss
    from lightning_modules.training.schedules import RunLengthSchedule
    from lightning_modules.training.task_gradients import BalancedTaskGradients

    module = CardiacSegmentationModule(torch.nn.Identity(), deep_supervision=False)
    assert type(module.loss) is PartialLabelLoss and type(module.postprocessing) is PostProcessing
    assert type(module.lr_schedule) is RunLengthSchedule and type(module.task_gradients) is BalancedTaskGradients
    assert module.postprocessing.contained_in == {"scar": "myo"} and "la" in module.postprocessing.largest_component
    pickle.loads(pickle.dumps(module))  # ddp_spawn hands the module to its ranks this way
