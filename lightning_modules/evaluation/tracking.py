"""Weights & Biases without surprises: online when this machine is logged in, offline otherwise.

Lightning's ``WandbLogger`` goes online unless told otherwise, and ``wandb.init`` then asks for an
API key (interactive) or fails (batch jobs); a network error at start-up ends the run. For a
research group's daily runs on a cluster neither is acceptable, so this logger decides the mode
from the machine's W&B credentials and falls back to offline (``wandb sync`` uploads it later)
when the online start fails.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn

Mode = Literal["auto", "online", "offline", "disabled"]


def has_wandb_credentials() -> bool:
    """Whether W&B can authenticate without asking: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: Mode = "auto") -> str:
    """``online``, ``offline`` or ``disabled``. ``auto``: ``WANDB_MODE`` if the user set it, else
    online only when credentials exist (a run never stops to ask for a key)."""
    if mode != "auto":
        return mode
    requested = os.environ.get("WANDB_MODE", "").lower()
    if requested in ("online", "offline", "disabled"):
        return requested
    if requested == "dryrun":
        return "offline"
    return "online" if has_wandb_credentials() else "offline"


class CareWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with the mode chosen by the machine, and an offline fallback.

    Args:
        mode: ``auto`` (online when W&B credentials exist or ``WANDB_MODE=online``, else offline),
            ``online``, ``offline`` or ``disabled``.
        project: W&B project.
        name: run name (the experiments use ``CARE_RUN_ID``).
        save_dir: folder of the local W&B run files.
        group: W&B group (e.g. a sweep or an experiment family).
        tags: W&B tags.
        log_model: upload checkpoints as artifacts (online only).
    """

    def __init__(self, mode: Mode = "auto", project: str = "care-cardiac", name: str | None = None,
                 save_dir: str = "results", group: str | None = None, tags: list[str] | None = None,
                 log_model: bool = False):
        if mode not in ("auto", "online", "offline", "disabled"):
            raise ValueError(f"mode must be auto, online, offline or disabled, got {mode!r}")
        self.mode = resolve_mode(mode)
        online = self.mode == "online"
        Path(save_dir).mkdir(parents=True, exist_ok=True)  # wandb falls back to /tmp when the folder is missing
        super().__init__(name=name, save_dir=save_dir, project=project, offline=not online,
                         log_model=log_model and online, group=group, tags=tags,
                         mode="disabled" if self.mode == "disabled" else None)

    @property
    @rank_zero_experiment
    def experiment(self):
        try:
            return super().experiment
        except Exception as err:  # noqa: BLE001 (any start-up failure of W&B must not end a training run)
            if self._offline:
                raise
            rank_zero_warn(f"W&B could not start online ({type(err).__name__}: {err}); logging offline instead. "
                           "Upload later with `wandb sync`.")
            self._offline, self._experiment, self.mode = True, None, "offline"
            self._log_model = False
            return super().experiment
