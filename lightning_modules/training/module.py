"""The LightningModule: partial-label training, and scores per case, center and ID/OOD role.

Whole-volume inference is ``lightning_modules.inference.predictor``; files, tables and pictures
for people are callbacks (``lightning_modules.evaluation.reporting``)."""

from __future__ import annotations

import math
import os

import lightning as L
import numpy as np
import pandas as pd
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.cli import OptimizerCallable
from monai.inferers import Inferer

from datamodules.geometry import spacing_of
from lightning_modules.evaluation import aggregate
from lightning_modules.evaluation.distributed import gather_rows
from lightning_modules.evaluation.metrics import score_case
from lightning_modules.inference.postprocessing import PostProcessing
from lightning_modules.inference.predictor import WholeVolumePredictor, default_inferer
from lightning_modules.training.losses import PartialLabelLoss
from lightning_modules.training.schedules import RunLengthSchedule, time_budget
from lightning_modules.training.task_gradients import BalancedTaskGradients
from networks.fixed_head import FixedHeadSegmenter
from networks.segmenter import PromptSegmenter


def _concrete(component):
    """A default given as jsonargparse's ``lazy_instance`` (so ``--print_config`` can show it) as a
    plain instance of its class: the lazy one's class is made at run time and does not pickle
    (``ddp_spawn``, ``copy.deepcopy``)."""
    lazy = getattr(component, "_lazy_class_type", None)
    return component if lazy is None else lazy(**component._lazy_kwargs)


class CardiacSegmentationModule(L.LightningModule):
    """Trains a prompt-conditioned segmenter across tasks and scores it per case, center and ID/OOD role.

    Args:
        net: the segmenter (image + prompts -> one logit map per prompt): the text-prompt model,
            or the fixed-head baseline (one output channel per structure).
        loss: partial-label loss; only annotated prompts count.
        inferer: MONAI inferer for whole volumes. A ``SliceInferer`` runs a 2D model slice by
            slice across each case's slice axis (found from the spacing); a
            ``SlidingWindowInferer`` runs a 3D model. ``None``: built at setup from the
            datamodule's patch size (Gaussian weighting, overlap 0.25).
        optimizer: optimizer factory (``class_path`` in YAML).
        lr_schedule: warm-up and decay of the learning rate, stepped per optimizer step over the
            run's length (``max_epochs``, ``max_steps`` or ``max_time``, whichever ends it
            first); ``None``: constant rate.
        postprocessing: threshold, largest-component cleanup and containment (scar in
            myocardium), shared by validation, test and predict.
        tta_axes: test-time augmentation: spatial axes of the preprocessed (RAS) array to mirror,
            averaging the probabilities of every combination of flips (nnU-Net's mirroring).
            Only sound for a model trained in mirrored orientations
            (``data.augmentation.orientation_probability``). ``None``: off.
        deep_supervision: also train on the masks after every earlier decoder layer (prompt
            model only), weighted as nnU-Net weights its deeper outputs: each layer back from
            the last counts half as much, and the weights sum to 1.
        task_gradients: how the tasks of a mixed batch make one gradient; ``None``: their
            losses are summed (one backward pass).
    """

    def __init__(
        self,
        net: PromptSegmenter | FixedHeadSegmenter,
        loss: PartialLabelLoss = lazy_instance(PartialLabelLoss),
        inferer: Inferer | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_schedule: RunLengthSchedule | None = lazy_instance(RunLengthSchedule),
        postprocessing: PostProcessing = lazy_instance(PostProcessing),
        tta_axes: list[int] | None = None,
        deep_supervision: bool = True,
        task_gradients: BalancedTaskGradients | None = lazy_instance(BalancedTaskGradients),
    ):
        super().__init__()
        self.net = net
        self.loss = _concrete(loss)
        self.inferer = inferer
        self.optimizer = optimizer
        self.lr_schedule = _concrete(lr_schedule)
        self.postprocessing = _concrete(postprocessing)
        if deep_supervision and not isinstance(net, PromptSegmenter):
            raise ValueError(f"deep_supervision needs the prompt model's decoder layers; {type(net).__name__} has none")
        self.deep_supervision = deep_supervision
        self.task_gradients = _concrete(task_gradients)
        self.tta_axes = sorted(set(tta_axes or []))
        if any(axis not in (0, 1, 2) for axis in self.tta_axes):
            raise ValueError(f"tta_axes must be spatial axes 0, 1 or 2, got {tta_axes}")
        self._rows: list[dict] = []
        # the last validation's or test's rows over every DDP rank, one per (case, structure); the
        # reporting callbacks (lightning_modules.evaluation.reporting) write and draw from them
        self.results: pd.DataFrame | None = None
        # the resolved experiment YAML, set by the CLI; saved in every checkpoint (see on_save_checkpoint)
        self.experiment_config: str | None = None

    # ---- set-up -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.inferer is None:
            datamodule = getattr(self.trainer, "datamodule", None)
            patch = getattr(datamodule, "patch_size", None)
            if patch is None:
                raise ValueError("no inferer given and no datamodule patch_size to build one from")
            self.inferer = default_inferer(patch)
        if stage == "fit" and self.task_gradients is not None:
            self.task_gradients.check_precision(str(self.trainer.precision))

    @property
    def predictor(self) -> WholeVolumePredictor:
        """Whole-volume inference with this module's network, inferer, mirroring and post-processing."""
        if self.inferer is None:
            raise ValueError("no inferer yet: pass one, or run setup() with a datamodule that has a patch_size")
        return WholeVolumePredictor(self.net, self.inferer, self.tta_axes, self.postprocessing)

    def configure_optimizers(self):
        optimizer = self.optimizer(self.parameters())
        if self.lr_schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_schedule.build(optimizer, self.run_progress)}

    def on_train_start(self) -> None:
        if self.lr_schedule is not None:
            self.run_progress(self.global_step)  # a run without a length is refused before its first step

    def run_progress(self, step: int) -> float:
        """How far through the run optimizer step ``step`` is, in [0, 1]: the larger of its share
        of the trainer's steps (``estimated_stepping_batches``, from max_epochs or max_steps)
        and the share of ``max_time`` used, so the schedule ends when the run does."""
        if step == 0:
            # the scheduler asks at construction, before Lightning restores a resumed run's
            # loader state; reading the run length then would load the train loader too early
            return 0.0
        shares = []
        total = self.trainer.estimated_stepping_batches
        if math.isfinite(total) and total > 0:
            shares.append(step / total)
        timer = time_budget(self.trainer)
        if timer is not None:
            elapsed = timer.time_elapsed()
            shares.append(elapsed / max(elapsed + timer.time_remaining(), 1e-9))
        if not shares:
            raise ValueError("lr_schedule follows the run length: set trainer.max_epochs, max_steps or max_time")
        return min(max(shares), 1.0)

    # ---- training -----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._seed_prompt_noise(batch_idx)
        if self.task_gradients is not None and len(set(batch["task"])) > 1:
            params = [p for p in self.parameters() if p.requires_grad]
            loss, value = self.task_gradients(batch, self._logged_loss, params)
        else:
            loss = value = self._logged_loss(batch)
        self.log("train/loss", value, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _logged_loss(self, batch: dict) -> torch.Tensor:
        loss, logits, groups = self._training_loss(batch)
        self._log_group_losses(logits.detach(), batch, groups)
        return loss

    def _seed_prompt_noise(self, batch_idx: int) -> None:
        """Seed the prompt encoder's training noise (``embedding_noise``) from the run's seed, the
        rank, the step and the batch: a resumed run (whose global RNG Lightning does not restore)
        draws the noise the uninterrupted run drew, and each rank draws its own."""
        encoder = getattr(self.net, "prompt_encoder", None)
        if getattr(encoder, "embedding_noise", 0) > 0:
            # SeedSequence mixes the parts, as the patch sampler mixes (seed, epoch)
            parts = [int(os.environ.get("PL_GLOBAL_SEED", 0)), self.global_rank, self.global_step, batch_idx]
            encoder.seed_noise(int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0]))

    def _training_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """The batch's loss, its final-layer logits and the group name of each prompt."""
        embeddings, padding = self.net.encode_prompts(batch["prompts"])
        # batch Dice pools per task and structure (see PartialLabelLoss)
        groups = [[f"{task}/{key}" for key in keys] for task, keys in zip(batch["task"], batch["structures"])]
        if self.deep_supervision:
            outputs = self.net(batch["image"], embeddings, padding, all_layers=True)
            weights = torch.tensor([0.5 ** (len(outputs) - 1 - i) for i in range(len(outputs))])
            weights = (weights / weights.sum()).tolist()
            loss = sum(w * self.loss(o, batch["target"], batch["prompt_mask"], groups) for w, o in zip(weights, outputs))
            return loss, outputs[-1], groups
        logits = self.net(batch["image"], embeddings, padding)
        return self.loss(logits, batch["target"], batch["prompt_mask"], groups), logits, groups

    def _log_group_losses(self, logits: torch.Tensor, batch: dict, groups: list[list[str]]) -> None:
        """The (final-layer) loss of each task and of each task's structure in this batch, as
        epoch means ``train/loss/<task>`` and ``train/loss/<task>/<structure>``: the total alone
        hides a task or a structure that stops learning while the others go on."""
        samples: dict[str, int] = {}
        for task in batch["task"]:
            samples[task] = samples.get(task, 0) + 1
        for key, value in self.loss.parts(logits, batch["target"], batch["prompt_mask"], groups).items():
            self.log(f"train/loss/{key}", value, on_step=False, on_epoch=True,
                     batch_size=samples.get(key, samples.get(key.split("/")[0], 1)))

    def score(self, batch: dict, predicted: np.ndarray | None = None) -> list[dict]:
        """One row per annotated (case, structure): ids, role, file paths, Dice, HD, HD95, volumes."""
        if batch["reference"] is None:
            raise ValueError(f"case {batch['uid']} ({batch['image_path']}) has no label to score against")
        identity = {key: batch[key] for key in (*aggregate.CASE_KEYS, "subject", "phase", "image_path", "label_path")}
        predicted = self.predictor.predict(batch)[0].masks if predicted is None else predicted
        return score_case(predicted, batch["reference"], batch["structures"], batch["annotated"],
                          spacing_of(batch["original_affine"]), identity)

    # ---- validation and test ---------------------------------------------------------------
    def _scored_step(self, batch: dict) -> dict:
        """Predict and score one volume; its masks and mean Dice go on to callbacks (overlays, worst cases)."""
        predicted = self.predictor.predict(batch)[0].masks
        rows = self.score(batch, predicted)
        self._rows.extend(rows)
        return {"masks": predicted, "dice": float(np.mean([row["dice"] for row in rows])) if rows else math.nan}

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._scored_step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._scored_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._rows = []

    def on_test_epoch_start(self) -> None:
        self._rows = []

    def _epoch_frame(self) -> pd.DataFrame:
        """This epoch's rows of every rank (gathered once; every rank gets the same table)."""
        frame = aggregate.rows_frame(gather_rows(self._rows))
        self._rows = []
        self.results = frame
        return frame

    def _log_metrics(self, frame: pd.DataFrame, prefix: str) -> dict[str, float]:
        """Log per task x center and per task x ID/OOD metrics, plus the mean ID Dice over tasks."""
        values: dict[str, float] = {}
        for row in aggregate.task_center_means(frame).itertuples():
            for metric in aggregate.METRICS:
                values[f"{prefix}/{row.task}/{row.name}/{metric}"] = getattr(row, metric)
        board = aggregate.leaderboard(frame)
        for row in board.itertuples():
            for metric in aggregate.METRICS:
                values[f"{prefix}/{row.task}/{row.split}/{metric}"] = getattr(row, metric)
        for split in ("ID", "OOD"):
            part = board[board.split == split]
            if len(part):
                values[f"{prefix}/{split}/dice"] = float(part.dice.mean())
                values[f"{prefix}/{split}/hd95"] = float(part.hd95.mean())
        # every rank holds the same gathered rows, so the values agree without a reduction
        self.log_dict({k: float(v) for k, v in values.items()}, sync_dist=False)
        return values

    def on_validation_epoch_end(self) -> None:
        frame = self._epoch_frame()
        if not frame.empty and not self.trainer.sanity_checking:
            self._log_metrics(frame, "val")

    def on_test_epoch_end(self) -> None:
        frame = self._epoch_frame()
        if not frame.empty:
            self._log_metrics(frame, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the resolved experiment travels with the weights (a plain string: weights-only loading works)
        if self.experiment_config is not None:
            checkpoint["experiment_config"] = self.experiment_config

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Probability maps, final masks and (for task prompts) the label map on the original grid, with the case's identity."""
        prediction = self.predictor.predict(batch)[0]
        return {"uid": batch["uid"], "case_id": batch["case_id"], "task": batch["task"],
                "structures": batch["structures"], "prompts": batch["prompts"][0],
                "probabilities": prediction.probabilities, "masks": prediction.masks, "label": prediction.label,
                "image_path": batch["image_path"],
                "affine": np.asarray(batch["original_affine"])}
