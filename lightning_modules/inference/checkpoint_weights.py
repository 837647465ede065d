"""Loading a checkpoint's weights into an experiment built from YAML (``predict``, ``prompts``)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from lightning_modules.command_line.experiment import class_default

# Settings of model.net that shape how a network is trained, not what trained weights compute:
# a checkpoint trained with another value answers the same, so they are not compared.
TRAINING_ONLY = frozenset({"embedding_noise"})


def _flat(node, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {key: value for name, child in node.items() for key, value in _flat(child, f"{prefix}.{name}" if prefix else name).items()}


def _class_default(flat: dict[str, object], key: str):
    """The constructor default of setting ``key`` (``...init_args.<name>``) of the class named
    beside it; ``None`` where there is none."""
    if ".init_args." not in key:
        return None
    owner, name = key.rsplit(".init_args.", 1)
    class_path = flat.get(f"{owner}.class_path")
    if not class_path or "." in name:
        return None
    return class_default(class_path, name)


def network_differences(saved_config: str, config: dict) -> list[str]:
    """Settings of ``model.net`` that differ between a checkpoint's saved experiment and this one.

    A setting the checkpoint's experiment does not have (an option added since) counts as the
    class's default, which is what that experiment ran with: options are added with a default
    that keeps the old behaviour. ``TRAINING_ONLY`` settings are not compared.
    """
    def compared(node) -> dict[str, object]:
        return {key: value for key, value in _flat(node, "model.net").items()
                if key.rsplit(".", 1)[-1] not in TRAINING_ONLY}

    theirs = compared((yaml.safe_load(saved_config) or {}).get("model", {}).get("net"))
    ours = compared(config.get("model", {}).get("net"))
    differences = [f"{key}: checkpoint {theirs[key]!r}, here {ours[key]!r}" for key in sorted(set(theirs) & set(ours))
                   if theirs[key] != ours[key]]
    for key in sorted(set(ours) - set(theirs)):
        default = _class_default(ours, key)
        if default is not None and ours[key] != default:
            differences.append(f"{key}: checkpoint {default!r} (its default, not written then), here {ours[key]!r}")
    return differences


def load_weights(model: torch.nn.Module, checkpoint: Path, config: dict) -> None:
    """The checkpoint's weights into ``model``, loaded weights-only (a checkpoint file cannot run
    code). ``ValueError`` when the checkpoint was trained with another network: settings of
    ``model.net`` that differ from its saved experiment (weights of the same shapes can mean
    another network, e.g. prompts that attend to each other or not), or weights that do not fit.

    Args:
        config: this experiment's resolved settings (``yaml.safe_load`` of the parser's dump).
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state.get("experiment_config"):
        differences = network_differences(state["experiment_config"], config)
        if differences:
            raise ValueError(f"--ckpt_path {checkpoint} was trained with another network than this experiment "
                             "builds; give the --config files and overrides it was trained with:\n  "
                             + "\n  ".join(differences))
    try:
        model.load_state_dict(state["state_dict"] if "state_dict" in state else state)
    except RuntimeError as err:  # missing, unexpected or differently shaped weights
        detail = " ".join(str(err).split())
        raise ValueError(f"--ckpt_path {checkpoint} does not fit this experiment's model (was it trained "
                         f"with other --config or overrides?): {detail[:600]}") from err


def experiment_settings(cli) -> dict:
    """The resolved settings of an experiment built by ``build_experiment``, as plain data."""
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
