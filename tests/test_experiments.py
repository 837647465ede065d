"""Every experiment and every sweep point parses with the CLI, so nothing fails at launch."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import yaml

from lightning_modules.cli import main
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


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_point_is_a_valid_configuration(path, in_run_folder, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # sweep commands name experiments relative to the repository
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"].startswith("val/")
    points = expand(sweep)
    assert points and (sweep["method"] != "grid" or len(points) == math.prod(
        len(spec.get("values", [None])) for spec in sweep["parameters"].values()))
    for point in points:
        words = command_line(sweep, point)
        assert words[:2] == ["care-cardiac", "fit"], words
        with pytest.raises(SystemExit) as stop:
            main([*words[1:], "--print_config"])
        printed = capsys.readouterr().out
        assert stop.value.code == 0, f"{path.name} {point}: {printed[-500:]}"
        for key, value in point.items():  # the override reached the parsed config
            leaf = key.split(".")[-1]
            found = re.findall(rf"^\s*{re.escape(leaf)}: (.+)$", printed, flags=re.M)
            assert any(_same(v, value) for v in found), f"{path.name}: {key}={value} not in the config"


def _same(printed: str, value) -> bool:
    try:
        return math.isclose(float(printed), float(value), rel_tol=1e-9)
    except ValueError:
        return printed.strip() == str(value)


@pytest.mark.parametrize("extra", [[], ["baselines/la.yaml"], ["baselines/whs.yaml"], ["baselines/myops.yaml"],
                                   ["multiscale_decoder.yaml"]], ids=["unified", "la", "whs", "myops", "multiscale"])
def test_unified_experiment_and_its_variants_parse(extra, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    configs = [word for name in ["care_unified.yaml", *extra] for word in ("--config", f"experiments/{name}")]
    with pytest.raises(SystemExit) as stop:
        main(["fit", *configs, "--print_config"])
    printed = capsys.readouterr().out
    assert stop.value.code == 0, printed[-500:]
    assert "precision: bf16-mixed" in printed and "strategy: ddp" in printed and "devices: 8" in printed
    assert re.search(r"patch_size:\n  - 96\n  - 96\n  - 96", printed)  # 3D (spatial_dims is linked from it)
    if extra and extra[0].startswith("baselines/"):
        task = extra[0].split("/")[1].removesuffix(".yaml")
        assert f"tasks:\n  - {task}" in printed or f"tasks: [{task}]" in printed
