"""Every experiment and every sweep point parses with the CLI, so nothing fails at launch."""

from __future__ import annotations

import itertools
import math
import random
import re
from pathlib import Path

import pytest
import torch
import yaml

import vocabulary
from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.command_line.main import main
from tests.conftest import REPO

SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
RANDOM_POINTS = 4  # sampled points per random/bayes sweep


def _draw(spec: dict, rng: random.Random):
    """One value of a W&B sweep parameter (the distributions the sweeps here use, and the common rest)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    kind = spec.get("distribution", "uniform")
    low, high = spec["min"], spec["max"]
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "int_uniform":
        return rng.randint(low, high)
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if kind == "q_uniform":
        return round(rng.uniform(low, high) / spec.get("q", 1)) * spec.get("q", 1)
    raise NotImplementedError(f"sweep distribution {kind!r} is not expanded by this test yet")


def expand(sweep: dict, samples: int = RANDOM_POINTS, seed: int = 0) -> list[dict]:
    """All grid points, or ``samples`` random draws, of a W&B sweep's parameters."""
    parameters = sweep["parameters"]
    if sweep["method"] == "grid":
        names = list(parameters)
        choices = [parameters[n]["values"] if "values" in parameters[n] else [parameters[n]["value"]] for n in names]
        return [dict(zip(names, point)) for point in itertools.product(*choices)]
    rng = random.Random(seed)
    return [{name: _draw(spec, rng) for name, spec in parameters.items()} for _ in range(samples)]


def command_line(sweep: dict, point: dict) -> list[str]:
    """The command a W&B agent runs for ``point`` (``${env}`` dropped, ``${args}`` as ``--key=value``)."""
    words = []
    for word in sweep["command"]:
        if word == "${env}":
            continue
        if word == "${args}":
            words += [f"--{key}={value}" for key, value in point.items()]
        elif word == "${program}":
            words.append(sweep["program"])
        else:
            words.append(word)
    return words


def _same(printed, value) -> bool:
    try:
        return math.isclose(float(printed), float(value), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(printed).strip() == str(value)


def step_once(cli) -> None:
    """One training step (finite loss, gradients reach the backbone) and one whole-volume
    inference on a volume slightly larger than a patch, on a synthetic whole-heart case."""
    module, patch = cli.model, list(cli.datamodule.patch_size)
    structures = ("lv", "myo", "aorta")
    prompts = [[vocabulary.prompt(key, "CT") for key in structures]]
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(1, 1, *patch, generator=generator),
             "target": (torch.rand(1, 3, *patch, generator=generator) > 0.7).float(),
             "prompt_mask": torch.ones(1, 3, dtype=torch.bool), "prompts": prompts, "task": ["whs"],
             "structures": [structures]}
    module.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.net.backbone.parameters())
    volume = [*patch, 5] if len(patch) == 2 else [*patch[:2], patch[2] + 6]
    module.eval()
    with torch.no_grad():
        logits = module.predictor.logits(torch.randn(1, 1, *volume, generator=generator), 2, prompts)
    assert logits.shape == (1, 3, *volume) and torch.isfinite(logits).all()


# Each base experiment with the overrides that shrink it to a CPU test (same components)
SHRINK = {
    "phantoms.yaml": ["--model.net.init_args.backbone.init_args.base_filters", "8"],
    "real_samples.yaml": ["--model.net.init_args.backbone.init_args.base_filters", "8"],
    "unseen_center.yaml": ["--model.net.init_args.backbone.init_args.base_filters", "8"],
    "care_unified.yaml": ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
                          "--model.net.init_args.backbone.init_args.base_filters", "4",
                          "--model.net.init_args.backbone.init_args.max_filters", "16",
                          "--data.patch_size", "[64, 64, 32]"],
}
# every base, and every variant on each base the README or the variant's own header documents it with
COMBINATIONS = [("phantoms.yaml",), ("phantoms.yaml", "fixed_head.yaml"), ("phantoms.yaml", "multiscale_decoder.yaml"),
                ("real_samples.yaml",), ("unseen_center.yaml",), ("real_samples.yaml", "baselines/acdc.yaml"),
                ("care_unified.yaml",), ("care_unified.yaml", "baselines/la.yaml"),
                ("care_unified.yaml", "baselines/whs.yaml"), ("care_unified.yaml", "baselines/myops.yaml"),
                ("care_unified.yaml", "multiscale_decoder.yaml"),
                *[("real_samples.yaml", f"backbones/{p.name}") for p in sorted((REPO / "experiments" / "backbones").glob("*.yaml"))],
                ("care_unified.yaml", "backbones/swinunetr.yaml")]


@pytest.mark.slow
@pytest.mark.parametrize("names", COMBINATIONS, ids=["+".join(n.removesuffix(".yaml") for n in c) for c in COMBINATIONS])
def test_every_experiment_builds_trains_a_step_and_infers(names, in_run_folder, monkeypatch):
    monkeypatch.chdir(REPO)  # the variants are documented with paths relative to the repository
    configs = [word for name in names for word in ("--config", f"experiments/{name}")]
    shrink = SHRINK[names[0]]
    if any(name.startswith("backbones/") for name in names):
        # a backbone variant replaces the network the base's backbone overrides are written for
        pairs = list(zip(shrink[::2], shrink[1::2]))
        shrink = [word for key, value in pairs if ".backbone.init_args." not in key for word in (key, value)]
    cli = build_experiment([*configs, *shrink, "--trainer.logger", "false",
                            "--trainer.default_root_dir", str(in_run_folder)])
    if len(names) > 1 and names[1].startswith("baselines/"):
        task = names[1].split("/")[1].removesuffix(".yaml")
        assert {s.task for s in cli.datamodule.sources} == {task}
    step_once(cli)


def test_the_unified_experiment_keeps_its_scale_settings(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "experiments/care_unified.yaml", "--print_config"])
    printed = capsys.readouterr().out
    assert stop.value.code == 0, printed[-500:]
    assert "precision: bf16-mixed" in printed and "strategy: ddp" in printed and "devices: 8" in printed
    assert re.search(r"patch_size:\n  - 96\n  - 96\n  - 96", printed)


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_point_builds_trains_a_step_and_infers(path, in_run_folder, monkeypatch):
    monkeypatch.chdir(REPO)  # sweep commands name experiments relative to the repository
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"].startswith("val/")
    points = expand(sweep)
    assert points and (sweep["method"] != "grid" or len(points) == math.prod(
        len(spec.get("values", [None])) for spec in sweep["parameters"].values()))
    for point in points:
        words = command_line(sweep, point)
        assert words[:2] == ["care-cardiac", "fit"], words
        base = Path(words[words.index("--config") + 1]).name
        cli = build_experiment([*words[2:], *SHRINK[base], "--trainer.logger", "false",
                                "--trainer.default_root_dir", str(in_run_folder)])
        for key, value in point.items():  # the override reached the parsed config
            assert _same(cli.config.get(key), value), f"{path.name}: {key}={value} not in the config"
        step_once(cli)
