"""The LightningModule: partial-label training, whole-volume evaluation, per-case result tables."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import lightning as L
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from monai.transforms import KeepLargestConnectedComponent

from datamodules import vocabulary
from datamodules.geometry import spacing_of
from datamodules.label_maps import compose_label_map
from datamodules.preprocessing import to_original_grid
from lightning_modules import aggregate
from lightning_modules.distributed import gather_rows
from lightning_modules.losses import PartialLabelLoss
from lightning_modules.metrics import score_case
from lightning_modules.overlays import overlay_panel
from lightning_modules.results_io import write_csv_atomic
from networks.fixed_head import FixedHeadSegmenter
from networks.segmenter import PromptSegmenter


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
        scheduler: learning-rate scheduler factory, stepped per epoch; ``None`` for none.
        threshold: probability above which a voxel is predicted as the prompted structure.
        largest_component: structure keys whose prediction is cut to its largest connected
            component (nnU-Net's post-processing; MONAI ``KeepLargestConnectedComponent``) for
            single-region structures (ventricles, myocardium, vessels); leave out scar and edema,
            which may be several regions.
        contained_in: structure -> the structure that contains it (``{scar: myo}``): its mask is
            cut to the container's final mask when both are prompted, as the label hierarchy
            says (MyoPS scar lies inside the myocardium), which removes stray detections.
        leaderboard_path: after ``test``, also write the ID/OOD leaderboard here (the run
            folder always gets its own copy).
        tta_axes: test-time augmentation: spatial axes of the preprocessed (RAS) array to mirror,
            averaging the probabilities of every combination of flips (nnU-Net's mirroring;
            ``[0, 1, 2]`` = 8 passes). Only useful for a model trained with flips
            (``data.augmentation.flip_tasks``): mirroring swaps left and right. ``None``: off.
        overlay_cases: validation cases per epoch (the first ones of rank 0) whose image,
            reference and prediction go to W&B as one picture each, when a W&B logger runs.
        deep_supervision: also train on the masks after every earlier decoder layer (prompt
            model only), weighted as nnU-Net weights its deeper outputs: each layer back from
            the last counts half as much, and the weights sum to 1.
    """

    def __init__(
        self,
        net: PromptSegmenter | FixedHeadSegmenter,
        loss: PartialLabelLoss | None = None,
        inferer: Inferer | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        threshold: float = 0.5,
        largest_component: list[str] | None = None,
        contained_in: dict[str, str] | None = None,
        leaderboard_path: str | None = None,
        tta_axes: list[int] | None = None,
        overlay_cases: int = 4,
        deep_supervision: bool = False,
    ):
        super().__init__()
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.net = net
        self.loss = loss if loss is not None else PartialLabelLoss()
        self.inferer = inferer
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.threshold = threshold
        self.largest_component = set(largest_component or [])
        unknown = self.largest_component - set(vocabulary.STRUCTURES)
        if unknown:
            raise ValueError(f"largest_component names unknown structures {sorted(unknown)}; "
                             f"known: {sorted(vocabulary.STRUCTURES)}")
        self.contained_in = dict(contained_in or {})
        unknown = (set(self.contained_in) | set(self.contained_in.values())) - set(vocabulary.STRUCTURES)
        if unknown:
            raise ValueError(f"contained_in names unknown structures {sorted(unknown)}")
        self._keep_largest = KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False)
        self.leaderboard_path = leaderboard_path
        if deep_supervision and not isinstance(net, PromptSegmenter):
            raise ValueError(f"deep_supervision needs the prompt model's decoder layers; {type(net).__name__} has none")
        self.deep_supervision = deep_supervision
        self.tta_axes = sorted(set(tta_axes or []))
        if any(axis not in (0, 1, 2) for axis in self.tta_axes):
            raise ValueError(f"tta_axes must be spatial axes 0, 1 or 2, got {tta_axes}")
        if overlay_cases < 0:
            raise ValueError(f"overlay_cases must be >= 0, got {overlay_cases}")
        self.overlay_cases = overlay_cases
        self._overlays: list[tuple[np.ndarray, str]] = []
        self._rows: list[dict] = []
        # the resolved experiment YAML, set by the CLI; saved in every checkpoint (see on_save_checkpoint)
        self.experiment_config: str | None = None

    # ---- set-up -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.inferer is None:
            datamodule = getattr(self.trainer, "datamodule", None)
            patch = getattr(datamodule, "patch_size", None)
            if patch is None:
                raise ValueError("no inferer given and no datamodule patch_size to build one from")
            options = {"roi_size": list(patch), "sw_batch_size": 32, "overlap": 0.25, "mode": "gaussian"}
            self.inferer = SliceInferer(spatial_dim=2, **options) if len(patch) == 2 else SlidingWindowInferer(**options)

    def configure_optimizers(self):
        optimizer = self.optimizer(self.parameters())
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}

    # ---- training -----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        embeddings, padding = self.net.encode_prompts(batch["prompts"])
        # batch Dice pools per task and structure (see PartialLabelLoss)
        groups = [[f"{task}/{key}" for key in keys] for task, keys in zip(batch["task"], batch["structures"])]
        if self.deep_supervision:
            outputs = self.net(batch["image"], embeddings, padding, all_layers=True)
            weights = torch.tensor([0.5 ** (len(outputs) - 1 - i) for i in range(len(outputs))])
            weights = (weights / weights.sum()).tolist()
            loss = sum(w * self.loss(o, batch["target"], batch["prompt_mask"], groups) for w, o in zip(weights, outputs))
        else:
            logits = self.net(batch["image"], embeddings, padding)
            loss = self.loss(logits, batch["target"], batch["prompt_mask"], groups)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    # ---- whole-volume inference -----------------------------------------------------------
    def sliding_window(self, image: torch.Tensor, prompts: list[list[str | None]], slice_axis: int) -> torch.Tensor:
        """Logits ``[1, P, *S]`` of one preprocessed volume ``[1, C, *S]``."""
        embeddings, padding = self.net.encode_prompts(prompts)
        # MONAI's SliceInferer drops extra network arguments, so the prompts are bound here
        network = functools.partial(self.net, prompt_embeddings=embeddings, prompt_padding=padding)
        if isinstance(self.inferer, SliceInferer):
            # the model slices across the case's own slice axis, wherever the array put it
            moved = image.movedim(2 + slice_axis, 2 + self.inferer.spatial_dim)
            return self.inferer(moved, network).movedim(2 + self.inferer.spatial_dim, 2 + slice_axis)
        return self.inferer(image, network)

    def probabilities(self, batch: dict) -> torch.Tensor:
        """Per-prompt probabilities ``[P, *S]`` on the case's original file grid (averaged over
        the mirrored passes when ``tta_axes`` is set)."""
        image, total, passes = batch["image"], None, 0
        for count in range(len(self.tta_axes) + 1):
            for axes in itertools.combinations(self.tta_axes, count):
                dims = [2 + axis for axis in axes]
                logits = self.sliding_window(image.flip(dims) if dims else image, batch["prompts"], batch["slice_axis"])
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

    def label_and_masks(self, batch: dict, probabilities: torch.Tensor | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """The label map in the task's codes (``None`` unless the prompts are task structures)
        and the binary masks ``[P, *S]`` that ``masks`` describes."""
        if probabilities is None:
            probabilities = self.probabilities(batch)
        predicted = probabilities > self.threshold
        for index, structure in enumerate(batch["structures"]):
            if structure in self.largest_component and predicted[index].any():
                predicted[index] = self._keep_largest(predicted[index][None].to(torch.uint8))[0].bool()
        structures = list(batch["structures"])
        for index, structure in enumerate(structures):
            container = self.contained_in.get(structure)
            if container in structures:
                predicted[index] &= predicted[structures.index(container)]
        predicted = predicted.numpy()
        layout = vocabulary.TASKS[batch["task"]].layout if batch.get("task") in vocabulary.TASKS else None
        if layout is None or not all(s in vocabulary.LAYOUTS[layout].structures for s in structures):
            return None, predicted
        label = compose_label_map(predicted, structures, layout, probabilities.numpy())
        return label, vocabulary.binary_masks(label, layout, structures)

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
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        predicted = self.masks(batch)
        self._rows.extend(self.score(batch, predicted))
        if batch_idx < self.overlay_cases and self._wandb() is not None and self.trainer.is_global_zero:
            image = np.asanyarray(nib.load(batch["image_path"]).dataobj)
            panel = overlay_panel(image, batch["reference"], predicted, spacing_of(batch["original_affine"]))
            names = ", ".join(f"{i + 1}={s}" for i, s in enumerate(batch["structures"]))
            self._overlays.append((panel, f"{batch['uid']} ({batch['role']}): image | reference | prediction; {names}"))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._rows.extend(self.score(batch))

    def on_validation_epoch_start(self) -> None:
        self._rows, self._overlays = [], []

    def on_test_epoch_start(self) -> None:
        self._rows = []

    def _epoch_frame(self) -> pd.DataFrame:
        frame = aggregate.rows_frame(gather_rows(self._rows))
        self._rows = []
        return frame

    def _log_tables(self, frame: pd.DataFrame, prefix: str) -> dict[str, float]:
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
        if frame.empty or self.trainer.sanity_checking:
            return
        self._log_tables(frame, "val")
        wandb_logger = self._wandb()
        if wandb_logger is not None and self.trainer.is_global_zero:
            wandb_logger.log_table("val/cases", dataframe=frame, step=self.global_step)
            if self._overlays:
                panels, captions = zip(*self._overlays)
                wandb_logger.log_image("val/overlays", list(panels), step=self.global_step, caption=list(captions))
        self._overlays = []

    def _wandb(self) -> WandbLogger | None:
        """The run's W&B logger, if it has one."""
        return next((logger for logger in self.loggers if isinstance(logger, WandbLogger)), None) \
            if self._trainer is not None else None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the resolved experiment travels with the weights (a plain string: weights-only loading works)
        if self.experiment_config is not None:
            checkpoint["experiment_config"] = self.experiment_config

    def on_test_epoch_end(self) -> None:
        frame = self._epoch_frame()
        if frame.empty:
            return
        self._log_tables(frame, "test")
        # log_dir is a collective under DDP (rank 0 broadcasts it): every rank must ask
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if not self.trainer.is_global_zero:
            return
        board = aggregate.leaderboard(frame)
        write_csv_atomic(frame, run_dir / "test_cases.csv")
        write_csv_atomic(aggregate.center_table(frame), run_dir / "test_centers.csv")
        write_csv_atomic(board, run_dir / "leaderboard.csv")
        if self.leaderboard_path:
            write_csv_atomic(board, self.leaderboard_path)
        wandb_logger = self._wandb()
        if wandb_logger is not None:
            wandb_logger.log_table("test/cases", dataframe=frame)
            wandb_logger.log_table("test/leaderboard", dataframe=board)
            # the notebook reads per-case rows back from a W&B run's files
            wandb_logger.experiment.save(str(run_dir / "test_cases.csv"), base_path=str(run_dir), policy="now")
        with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
            rank_zero_info(f"\nCARE leaderboard (mean over cases of the mean over structures):\n{board.to_string(index=False)}\n"
                           f"per-case rows: {run_dir / 'test_cases.csv'}")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Probability maps, final masks and (for task prompts) the label map on the original grid, with the case's identity."""
        probabilities = self.probabilities(batch)
        label, masks = self.label_and_masks(batch, probabilities)
        return {"uid": batch["uid"], "case_id": batch["case_id"], "task": batch["task"],
                "structures": batch["structures"], "prompts": batch["prompts"][0], "probabilities": probabilities,
                "masks": masks, "label": label, "image_path": batch["image_path"],
                "affine": np.asarray(batch["original_affine"])}
