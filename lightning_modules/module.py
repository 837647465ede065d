"""The LightningModule: partial-label training, whole-volume inference, per-case scores and the
metrics logged from them. Files, tables and pictures for people are callbacks
(``lightning_modules.reporting``); post-processing is ``lightning_modules.postprocessing``."""

from __future__ import annotations

import functools
import itertools
import math
import os

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.cli import OptimizerCallable
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

from datamodules import vocabulary
from datamodules.collate import subset_patches
from datamodules.geometry import spacing_of
from datamodules.neighbour_slices import with_neighbour_slices
from datamodules.preprocessing import to_original_grid
from lightning_modules import aggregate
from lightning_modules.distributed import gather_rows
from lightning_modules.gradient_surgery import check_precision_for_task_gradients, project_conflicting
from lightning_modules.losses import PartialLabelLoss
from lightning_modules.metrics import score_case
from lightning_modules.postprocessing import PostProcessing
from lightning_modules.schedules import RunLengthSchedule, time_budget
from networks.fixed_head import FixedHeadSegmenter
from networks.segmenter import PromptSegmenter


def default_inferer(patch_size: list[int]) -> Inferer:
    """Training-patch-sized windows, Gaussian weighting, overlap 0.25: slice by slice for a 2D patch."""
    options = {"roi_size": list(patch_size), "sw_batch_size": 32, "overlap": 0.25, "mode": "gaussian"}
    return SliceInferer(spatial_dim=2, **options) if len(patch_size) == 2 else SlidingWindowInferer(**options)


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
        lr_schedule: warm-up and decay of the learning rate, stepped per optimizer step, whose
            length is the run's (``max_epochs``, ``max_steps`` or ``max_time``, whichever ends
            it first); ``None``: constant rate.
        postprocessing: threshold, largest-component cleanup and containment (scar in
            myocardium), shared by validation, test and predict.
        tta_axes: test-time augmentation: spatial axes of the preprocessed (RAS) array to mirror,
            averaging the probabilities of every combination of flips (nnU-Net's mirroring;
            ``[0, 1, 2]`` = 8 passes; a 2D model skips its case's slice axis). Only useful
            for a model trained with flips (``data.augmentation.flip_tasks``): mirroring swaps
            left and right. ``None``: off.
        deep_supervision: also train on the masks after every earlier decoder layer (prompt
            model only), weighted as nnU-Net weights its deeper outputs: each layer back from
            the last counts half as much, and the weights sum to 1.
        neighbour_slices: 2D models: slices on either side that come with each slice as
            channels (2.5D), as in training; linked from ``data.neighbour_slices``.
        gradient_surgery: combine the tasks of a mixed batch by PCGrad
            (``lightning_modules.gradient_surgery``) instead of summing their losses: a task's
            gradient loses its component against another task's before the step.
        gradient_balance: scale each task's gradient in a mixed batch to the tasks' mean norm
            before combining them (with or without ``gradient_surgery``).
    """

    def __init__(
        self,
        net: PromptSegmenter | FixedHeadSegmenter,
        loss: PartialLabelLoss | None = None,
        inferer: Inferer | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_schedule: RunLengthSchedule | None = None,
        postprocessing: PostProcessing | None = None,
        tta_axes: list[int] | None = None,
        deep_supervision: bool = False,
        neighbour_slices: int = 0,
        gradient_surgery: bool = False,
        gradient_balance: bool = False,
    ):
        super().__init__()
        self.net = net
        self.loss = loss if loss is not None else PartialLabelLoss()
        self.inferer = inferer
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.postprocessing = postprocessing if postprocessing is not None else PostProcessing()
        if deep_supervision and not isinstance(net, PromptSegmenter):
            raise ValueError(f"deep_supervision needs the prompt model's decoder layers; {type(net).__name__} has none")
        self.deep_supervision = deep_supervision
        if neighbour_slices < 0:
            raise ValueError(f"neighbour_slices must be >= 0, got {neighbour_slices}")
        self.neighbour_slices = neighbour_slices
        self.gradient_surgery = gradient_surgery
        self.gradient_balance = gradient_balance
        if inferer is not None:
            self._check_inferer()
        self.tta_axes = sorted(set(tta_axes or []))
        if any(axis not in (0, 1, 2) for axis in self.tta_axes):
            raise ValueError(f"tta_axes must be spatial axes 0, 1 or 2, got {tta_axes}")
        self._rows: list[dict] = []
        # the last validation's or test's rows over every DDP rank, one per (case, structure); the
        # reporting callbacks (lightning_modules.reporting) write and draw from them
        self.results: pd.DataFrame | None = None
        # the resolved experiment YAML, set by the CLI; saved in every checkpoint (see on_save_checkpoint)
        self.experiment_config: str | None = None

    # ---- set-up -------------------------------------------------------------------------
    def _check_inferer(self) -> None:
        if self.neighbour_slices and not isinstance(self.inferer, SliceInferer):
            raise ValueError("neighbour_slices (2.5D) needs a 2D model run by a SliceInferer")

    def setup(self, stage: str) -> None:
        if self.inferer is None:
            datamodule = getattr(self.trainer, "datamodule", None)
            patch = getattr(datamodule, "patch_size", None)
            if patch is None:
                raise ValueError("no inferer given and no datamodule patch_size to build one from")
            self.inferer = default_inferer(patch)
        self._check_inferer()
        if stage == "fit" and (self.gradient_surgery or self.gradient_balance):
            check_precision_for_task_gradients(str(self.trainer.precision))

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
        if (self.gradient_surgery or self.gradient_balance) and len(set(batch["task"])) > 1:
            return self._surgery_step(batch)
        loss, logits, groups = self._training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
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

    @staticmethod
    def task_shares(batch: dict) -> dict[str, float]:
        """Each task's share of a batch's annotated structure groups: the weight its loss has in
        a mixed batch's Dice term (LA 1 of 4 beside MyoPS's 3)."""
        annotated = {(task, key) for task, keys, mask in zip(batch["task"], batch["structures"], batch["prompt_mask"])
                     for key, on in zip(keys, mask.tolist()) if on}
        counts = {task: max(sum(t == task for t, _ in annotated), 1) for task in set(batch["task"])}
        return {task: count / sum(counts.values()) for task, count in counts.items()}

    def _surgery_step(self, batch: dict) -> torch.Tensor:
        """PCGrad and/or balanced norms over the batch's tasks: each task's samples go forward
        and backward alone (the same compute as the whole batch at once), the gradients are
        combined by ``project_conflicting``, and the returned loss has the batch's loss as its value and
        the combined gradient as its gradient, so Lightning's backward, clipping, accumulation,
        precision and DDP handle it as any loss."""
        tasks = sorted(set(batch["task"]))
        params = [p for p in self.parameters() if p.requires_grad]
        shares = self.task_shares(batch)
        gradients, value = [], torch.zeros(())
        for task in tasks:
            subset = subset_patches(batch, [i for i, t in enumerate(batch["task"]) if t == task])
            loss, logits, groups = self._training_loss(subset)
            weighted = loss * shares[task]
            gradients.append(torch.autograd.grad(weighted, params, allow_unused=True))
            value = value + weighted.detach().float()
            self._log_group_losses(logits.detach(), subset, groups)
        combined = project_conflicting(gradients, order_seed=self.global_step, project=self.gradient_surgery,
                                       equal_norms=self.gradient_balance)
        carrier = sum((p * g).sum() for p, g in zip(params, combined) if g is not None)
        loss = carrier - carrier.detach() + value
        self.log("train/loss", value, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

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

    # ---- whole-volume inference -----------------------------------------------------------
    def _network(self, prompt_sets: list[list[str | None]]):
        """The network as the inferers call it (a window in, logits out), the prompts bound:
        MONAI's SliceInferer drops extra network arguments. Several prompt sets are decoded
        each on its own, their logits concatenated."""
        encoded = [self.net.encode_prompts([prompts]) for prompts in prompt_sets]
        if len(encoded) == 1:
            return functools.partial(self.net, prompt_embeddings=encoded[0][0], prompt_padding=encoded[0][1])
        if isinstance(self.net, PromptSegmenter):
            return functools.partial(self.net.forward_prompt_sets, prompt_sets=encoded)
        # the fixed-head baseline has no decoder to share a backbone pass with
        return lambda window: torch.cat([self.net(window, e, p) for e, p in encoded], 1)

    def sliding_window(self, image: torch.Tensor, prompts: list[list[str | None]], slice_axis: int,
                       prompt_sets: list[list[str | None]] | None = None) -> torch.Tensor:
        """Logits ``[1, P, *S]`` of one preprocessed volume ``[1, C, *S]`` for ``prompts[0]``, or,
        given ``prompt_sets``, for each set in turn (concatenated, one backbone pass per window)."""
        network = self._network(prompt_sets or [prompts[0]])
        if isinstance(self.inferer, SliceInferer):
            # 2.5D: each slice's neighbours become channels, built as the training volumes were
            image = with_neighbour_slices(image[0], slice_axis, self.neighbour_slices)[None]
            # the model slices across the case's own slice axis, wherever the array put it
            moved = image.movedim(2 + slice_axis, 2 + self.inferer.spatial_dim)
            return self.inferer(moved, network).movedim(2 + self.inferer.spatial_dim, 2 + slice_axis)
        return self.inferer(image, network)

    def probabilities(self, batch: dict, prompt_sets: list[list[str]] | None = None) -> torch.Tensor:
        """Per-prompt probabilities ``[P, *S]`` on the case's original file grid (averaged over
        the mirrored passes when ``tta_axes`` is set); given ``prompt_sets``, those of every
        set, each asked on its own, concatenated in order."""
        image, total, passes = batch["image"], None, 0
        mirrored = self.tta_axes
        if isinstance(self.inferer, SliceInferer):
            # a 2D model sees each slice on its own: mirroring the order of the slices is a
            # wasted pass, and with neighbour slices as channels (2.5D) it would hand the model
            # its neighbours in reverse, which training never did
            mirrored = [axis for axis in self.tta_axes if axis != batch["slice_axis"]]
        for count in range(len(mirrored) + 1):
            for axes in itertools.combinations(mirrored, count):
                dims = [2 + axis for axis in axes]
                logits = self.sliding_window(image.flip(dims) if dims else image, batch["prompts"], batch["slice_axis"],
                                             prompt_sets)
                probabilities = torch.sigmoid(logits[0].float())
                probabilities = probabilities.flip([d - 1 for d in dims]) if dims else probabilities
                total = probabilities if total is None else total + probabilities
                passes += 1
        return to_original_grid(total / passes, batch["affine"], batch["original_shape"], batch["original_affine"])

    def masks(self, batch: dict, probabilities: torch.Tensor | None = None) -> np.ndarray:
        """Binary masks ``[P, *S]`` on the original grid: thresholded, post-processed, and, when
        the prompts are the task's structures, passed through the exported label map (overlaps
        to the most probable structure, overlays such as scar written last), so what ``test``
        scores is exactly what ``predict`` writes."""
        return self.label_and_masks(batch, probabilities)[1]

    def label_and_masks(self, batch: dict, probabilities: torch.Tensor | None = None,
                        containers: dict[str, torch.Tensor] | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """The label map in the task's codes (``None`` unless the prompts are task structures)
        and the binary masks ``[P, *S]`` that ``masks`` describes (see ``PostProcessing``).
        ``containers``: probabilities of the containers of asked structures that were not
        asked themselves (predicted here when needed and not given)."""
        if probabilities is None:
            probabilities, containers = self.probabilities_and_containers(batch)
        elif containers is None:
            missing, hidden = self._container_prompts(batch)
            if missing:
                containers = dict(zip(missing, self.probabilities({**batch, "prompts": [hidden]})))
        return self.postprocessing(probabilities, batch["structures"], batch.get("task"), containers)

    def _container_prompts(self, batch: dict) -> tuple[list[str], list[str]]:
        """Containers of the asked structures that were not asked (``predict --structures scar``),
        and their canonical prompts in the case's modality."""
        missing = self.postprocessing.missing_containers(batch["structures"])
        return missing, [vocabulary.prompt(key, batch["modality"]) for key in missing]

    def probabilities_and_containers(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The prompts' probabilities and, for a structure asked without its container, the
        container's, asked alone in the same backbone pass and used only to cut the structure
        as its full set would (``None`` when no container is missing)."""
        missing, hidden = self._container_prompts(batch)
        if not missing:
            return self.probabilities(batch), None
        asked = batch["prompts"][0]
        both = self.probabilities(batch, prompt_sets=[asked, hidden])
        return both[:len(asked)], dict(zip(missing, both[len(asked):]))

    def score(self, batch: dict, predicted: np.ndarray | None = None) -> list[dict]:
        """One row per annotated (case, structure): ids, role, file paths, Dice, HD, HD95, volumes."""
        if batch["reference"] is None:
            raise ValueError(f"case {batch['uid']} ({batch['image_path']}) has no label to score against")
        identity = {key: batch[key] for key in ("uid", "case_id", "task", "center", "modality", "role",
                                                "image_path", "label_path")}
        predicted = self.masks(batch) if predicted is None else predicted
        return score_case(predicted, batch["reference"], batch["structures"], batch["annotated"],
                          spacing_of(batch["original_affine"]), identity)

    # ---- validation and test ---------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        predicted = self.masks(batch)
        self._rows.extend(self.score(batch, predicted))
        return {"masks": predicted}  # for callbacks (overlays)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._rows.extend(self.score(batch))

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
        probabilities, containers = self.probabilities_and_containers(batch)
        label, masks = self.label_and_masks(batch, probabilities, containers)
        return {"uid": batch["uid"], "case_id": batch["case_id"], "task": batch["task"],
                "structures": batch["structures"], "prompts": batch["prompts"][0], "probabilities": probabilities,
                "masks": masks, "label": label, "image_path": batch["image_path"],
                "affine": np.asarray(batch["original_affine"])}
