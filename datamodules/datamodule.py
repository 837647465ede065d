"""The multi-task LightningDataModule: sources -> manifest -> preprocessed cases -> loaders."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

import vocabulary
from datamodules.cache import CheckCache, PreprocessingCache, preprocessing_settings
from datamodules.case import DataSource
from datamodules.checks import CaseReport, check_cases, problems_of
from datamodules.collate import collate_patches, collate_volume
from datamodules.manifest import Manifest
from datamodules.patches import PatchDataset
from datamodules.preprocessing import PreprocessedCase, Preprocessing
from datamodules.progress import reported
from datamodules.resumable_loader import ResumableDataLoader
from datamodules.sampling import TaskSampling, WeightedCaseSampler, case_weights
from datamodules.splits import Splits
from datamodules.transforms.augmentation import Augmentation
from datamodules.volumes import VolumeDataset

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class CareDataModule(L.LightningDataModule):
    """Samples training patches across tasks, centers and modalities; serves whole volumes
    tagged with task, center, modality and ID/OOD role for validation and test.

    Args:
        sources: the experiment's data, one entry per folder (layout, root, task, center,
            modality, split).
        preprocessing: orientation, spacing and intensity settings.
        patch_size: ``[H, W]`` for 2D models (slices across each case's slice axis) or
            ``[X, Y, Z]`` for 3D models, in voxels of the preprocessed grid.
        batch_size: training patches per batch (per device).
        samples_per_epoch: training patches drawn per epoch, over all devices.
        foreground_fraction: share of patches centred on an annotated structure.
        task_sampling: share of tasks (and of centers/modalities within a task):
            ``uniform``, ``proportional`` to case counts, or ``temperature``.
        temperature: exponent 1/T on case counts for ``temperature`` sampling.
        task_weights: task key -> multiplier of its share of patches (default 1 each).
        augmentation: random training transforms; ``null`` for none.
        synonym_probability: chance that a training prompt uses a random synonym of its
            structure instead of the canonical name (so unseen phrasings still work).
        prompt_wording_probability: chance that a training prompt is written in a random
            sentence frame and modality wording (``vocabulary.PROMPT_TEMPLATES``,
            ``Modality.wordings``) instead of "{name} in {modality}".
        num_workers: loader worker processes.
        seed: seed of the training draw: which cases, and every patch's position, augmentation
            and prompt phrasing (per epoch; independent of ``seed_everything`` and of
            ``num_workers``, so a run resumed mid-epoch gets the same patches).
        cache_dir: folder for preprocessed volumes and data-check results, reused by later
            runs while files and settings are unchanged; ``null`` preprocesses every run.
        check_data: check every file of the stages' splits at ``setup`` (readable, matching
            grids, known label codes, finite intensities...) and stop with all problems listed.
        tasks: keep only the sources of these tasks (a separate model per task, for "unified vs
            separate" comparisons, is the unified experiment plus ``data.tasks: [la]``);
            ``None``: every source.
        splits: the experiment's splits file (``datamodules.splits``): each case's split from
            its subject's entry; ``None``: each source names its split.
        fold: the fold of the splits file that gives train and val.
        unseen_centers: centers held out of training and model selection (their train and val
            cases are dropped, their test cases scored as OOD): leave-one-center-out.
    """

    def __init__(
        self,
        sources: list[DataSource],
        preprocessing: Preprocessing = Preprocessing(),  # noqa: B008 (frozen in use; shown by --print_config)
        patch_size: list[int] = (96, 96),
        batch_size: int = 8,
        samples_per_epoch: int = 512,
        foreground_fraction: float = 0.7,
        task_sampling: TaskSampling = "uniform",
        temperature: float = 2.0,
        task_weights: dict[str, float] | None = None,
        augmentation: Augmentation | None = Augmentation(),  # noqa: B008
        synonym_probability: float = 0.5,
        prompt_wording_probability: float = 0.5,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        check_data: bool = True,
        tasks: list[str] | None = None,
        splits: str | None = None,
        fold: int = 0,
        unseen_centers: list[str] = (),
    ):
        super().__init__()
        if not sources:
            raise ValueError("sources is empty: name at least one data source")
        unknown = sorted(set(unseen_centers) - {source.center for source in sources})  # before `tasks` keeps some
        if unknown:
            raise ValueError(f"unseen_centers {unknown} are no source's center; the sources hold "
                             f"{sorted({s.center for s in sources})}")
        if tasks is not None:
            for key in tasks:
                vocabulary.task(key)
            kept = [source for source in sources if source.task in tasks]
            if not kept:
                raise ValueError(f"no source of tasks {tasks}; the sources hold {sorted({s.task for s in sources})}")
            sources = kept
        self.tasks = tasks
        self.splits = None if splits is None else Splits(splits, fold)  # a bad file stops here, before any work
        self.unseen_centers = list(unseen_centers)
        if len(patch_size) not in (2, 3) or min(patch_size) < 1:
            raise ValueError(f"patch_size must be 2 or 3 positive sizes, got {list(patch_size)}")
        if not 0 <= foreground_fraction <= 1:  # here, not first at the training loader, after preprocessing
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        if batch_size < 1 or samples_per_epoch < 1 or num_workers < 0:
            raise ValueError("batch_size and samples_per_epoch must be >= 1 and num_workers >= 0")
        self.sources = list(sources)
        self.preprocessing = preprocessing
        self.patch_size = list(patch_size)
        self.batch_size = batch_size
        self.samples_per_epoch = samples_per_epoch
        self.foreground_fraction = foreground_fraction
        self.task_sampling = task_sampling
        self.temperature = temperature
        self.task_weights = task_weights
        self.augmentation = augmentation
        for name, value in (("synonym_probability", synonym_probability),
                            ("prompt_wording_probability", prompt_wording_probability)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.synonym_probability = synonym_probability
        self.prompt_wording_probability = prompt_wording_probability
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.check_data = check_data
        self.manifest: Manifest | None = None
        self._prepared: dict[str, PreprocessedCase] = {}
        self.cache_entries_built = 0  # by this process: under DDP, one rank per node builds them all

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    def prepare_data(self) -> None:
        """Check and preprocess into ``cache_dir`` once per node, before any rank's ``setup``.

        Lightning calls this on one process per node (local rank 0) and holds the other ranks
        at a barrier meanwhile, so the files are read and every cache entry is written once,
        not raced for by every rank; their ``setup`` then reads the cache. Without a
        ``cache_dir`` there is nothing to share, and each rank preprocesses in ``setup``.
        On a first launch over a large dataset the barrier waits for all of it: keep the DDP
        timeout above that, or fill the cache first (``care-cardiac check`` reads every file;
        a single-process ``validate``/``fit`` run fills the volumes).
        """
        if self.cache_dir is None:
            return
        stage = self.trainer.state.fn.value if self.trainer is not None and self.trainer.state.fn else None
        self._prepare(stage)

    def setup(self, stage: str | None = None) -> None:
        self._prepare(stage)

    def _prepare(self, stage: str | None) -> None:
        """Check, then preprocess (or read from the cache), the cases of ``stage``'s splits."""
        if self.manifest is None:
            self.manifest = Manifest.from_sources(self.sources, self.splits, self.unseen_centers)
        splits = STAGE_SPLITS.get(stage or "fit", ("train", "val", "test"))
        todo = [c for split in splits for c in self.manifest.split(split) if c.uid not in self._prepared]
        if self.check_data and todo:
            # every file is checked before the first (slow) resampling starts
            problems = problems_of(self.check(todo))
            if problems:
                raise ValueError(f"data check found {len(problems)} problem(s):\n  " + "\n  ".join(problems))
        cache = None
        if self.cache_dir is not None:
            cache = PreprocessingCache(f"{self.cache_dir}/volumes", preprocessing_settings(self.preprocessing))
        for case in reported(todo, len(todo), "preprocessing"):
            role = self.manifest.role(case)
            self._prepared[case.uid] = (self.preprocessing(case, role) if cache is None
                                        else cache.load_or_build(case, role, self.preprocessing))
        if cache is not None:
            self.cache_entries_built += cache.misses

    def check(self, cases=None) -> list[CaseReport]:
        """Data-check reports of ``cases`` (default: every case of every source)."""
        if self.manifest is None:
            self.manifest = Manifest.from_sources(self.sources, self.splits, self.unseen_centers)
        cache = None if self.cache_dir is None else CheckCache(f"{self.cache_dir}/checks")
        return check_cases(self.manifest.cases if cases is None else cases, cache)

    def cases(self, split: str) -> list[PreprocessedCase]:
        if self.manifest is None:
            raise RuntimeError("call setup() before asking for cases")
        return [self._prepared[c.uid] for c in self.manifest.split(split)]

    def _loader_kwargs(self) -> dict:
        return {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}

    def train_dataloader(self) -> DataLoader:
        cases = self.cases("train")
        weights = case_weights([c.case for c in cases], self.task_sampling, self.temperature, self.task_weights)
        dataset = PatchDataset(cases, self.patch_size, self.foreground_fraction, self.augmentation,
                               self.synonym_probability, self.prompt_wording_probability)
        sampler = WeightedCaseSampler(weights, self.samples_per_epoch, seed=self.seed)
        return ResumableDataLoader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=collate_patches,
                                   drop_last=True, **self._loader_kwargs())

    def _volumes(self, split: str) -> DataLoader:
        cases = self.cases(split)
        if not cases:
            raise ValueError(f"no {split} cases: add a source with split: {split}")
        return DataLoader(VolumeDataset(cases), batch_size=1, collate_fn=collate_volume, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._volumes("val")

    def test_dataloader(self) -> DataLoader:
        return self._volumes("test")

    def predict_dataloader(self) -> DataLoader:
        return self._volumes("test")
