"""``care-cardiac predict``: label maps (and probabilities) for images, on each image's own grid.

    care-cardiac predict --config EXP.yaml --ckpt_path CKPT --output DIR
        (--input IMAGE_OR_FOLDER [--layout L] | --split test [--center C ...])
        (--task TASK [--structures ...] | --prompts "text" ... [--task TASK])
        [--modality M] [--probabilities] [--overwrite] [--devices N] [experiment overrides]

Everything that can be wrong (paths, outputs that exist, unreadable images, a checkpoint that
does not fit the experiment's model) is found before the first image is predicted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

import vocabulary
from datamodules.case import SPLITS, Case, DataSource
from datamodules.checks import check_cases, problems_of
from datamodules.collate import collate_volume
from datamodules.manifest import Manifest
from datamodules.prediction import PredictionDataset, case_id_of, image_files
from datamodules.readers import LABEL_FILES, READERS, read_source
from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.command_line.progress_bar import progress_bar
from lightning_modules.evaluation.results_io import write_text_atomic
from lightning_modules.inference.checkpoint_weights import (
    experiment_settings,
    load_weights,
)
from lightning_modules.inference.prediction_writer import LabelMapWriter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="care-cardiac predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable, as for fit)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of a run of this experiment")
    parser.add_argument("--output", required=True, help="folder for the predictions (not an input folder)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--input", help="an image file or a folder of images")
    where.add_argument("--split", choices=SPLITS, help="predict the experiment's sources of this split")
    parser.add_argument("--center", nargs="+", help="with --split: only these centers")
    parser.add_argument("--layout", choices=sorted(READERS),
                        help="with --input: read the folder as this release layout (case names, sequences)")
    parser.add_argument("--pattern", default="*.nii*", help="with --input folder and no --layout: image files to take")
    parser.add_argument("--task", choices=sorted(vocabulary.TASKS), help="predict the task's structures in its codes")
    parser.add_argument("--structures", nargs="+", help="with --task: these structures instead of the task's")
    parser.add_argument("--prompts", nargs="+", help="free-text prompts (written as codes 1..P)")
    parser.add_argument("--modality", choices=sorted(vocabulary.MODALITIES), help="modality of --input images (default: the task's)")
    parser.add_argument("--probabilities", action="store_true", help="also write per-prompt probability maps")
    parser.add_argument("--overwrite", action="store_true", help="replace prediction files that exist")
    parser.add_argument("--devices", type=int, default=1, help="devices to predict on (DDP when > 1)")
    return parser


def _input_cases(args, preprocessing) -> list[Case]:
    path = Path(args.input).expanduser()
    if not path.exists():
        raise ValueError(f"--input {path} does not exist")
    task_key = args.task or min(preprocessing.target_spacing, key=preprocessing.target_spacing.get)
    modality = args.modality or (vocabulary.TASKS[args.task].default_modality if args.task else None)
    if modality is None:
        raise ValueError("free-text prompts without --task need --modality (it picks the intensity normalisation)")
    if args.layout:
        if path.is_file():
            raise ValueError("--layout reads a folder; give the release folder as --input")
        source = DataSource(layout=args.layout, root=str(path), task=task_key, center=path.name, modality=modality,
                            split="test")
        return read_source(source)
    return [Case(case_id=case_id_of(p), task=task_key, center=path.stem if path.is_dir() else "input",
                 modality=modality, layout=vocabulary.TASKS[task_key].layout, image=str(p), label=None, split="test")
            for p in image_files(path, args.pattern)]


def _split_cases(args, datamodule) -> tuple[list[Case], list[Path]]:
    sources = datamodule.sources
    manifest = Manifest.from_sources(sources, datamodule.splits, datamodule.unseen_centers)
    cases = manifest.split(args.split)
    if args.center:
        unknown = sorted(set(args.center) - {c.center for c in cases})
        if unknown:
            raise ValueError(f"--center {unknown} has no {args.split} source in the experiment")
        cases = [c for c in cases if c.center in args.center]
    if not cases:
        raise ValueError(f"the experiment has no {args.split} cases to predict")
    centers = {c.center for c in cases}  # the folders of every source the predicted cases may come from
    roots = [Path(s.root).expanduser().resolve() for s in sources if s.center in centers]
    return cases, roots


def _output_paths(cases: list[Case], args, output: Path) -> dict[str, Path]:
    several = {}
    for case in cases:
        several.setdefault((case.task, case.center), set()).add(case.modality)
    paths: dict[str, Path] = {}
    for case in cases:
        folder = output
        if args.split:
            folder = output / case.task / case.center
            if len(several[(case.task, case.center)]) > 1:
                folder = folder / case.modality
        if args.prompts:
            relative = f"{case.case_id}_prompts.nii.gz"
        else:
            relative = LABEL_FILES[vocabulary.TASKS[case.task].layout](case.case_id)
        paths[case.uid] = folder / relative
    clashes = len(set(paths.values())) != len(paths)
    if clashes:
        raise ValueError("two cases would be written to the same file: their case names repeat; "
                         "predict them in separate runs or by --split (one folder per center)")
    return paths


def _refuse_inputs_as_output(output: Path, cases: list[Case], roots: list[Path]) -> None:
    resolved = output.resolve()
    folders = {Path(c.image).resolve().parent for c in cases} | set(roots)
    inside = [f for f in folders if resolved == f or f in resolved.parents]
    if inside:
        raise ValueError(f"--output {output} is (inside) an input folder ({inside[0]}); choose a new folder")


def _check_arguments(args) -> None:
    if args.prompts and args.structures:
        raise ValueError("give --structures (with --task) or --prompts, not both")
    if not args.prompts and not args.task and not args.split:
        raise ValueError("say what to segment: --task TASK or --prompts 'text' ...")
    if args.structures and not args.task:
        raise ValueError("--structures needs --task (its label codes are written)")
    if args.task and args.structures:
        layout = vocabulary.layout(vocabulary.TASKS[args.task].layout)
        missing = [s for s in args.structures if s not in layout.structures]
        if missing:
            raise ValueError(f"task {args.task!r} writes codes for {sorted(layout.structures)}; "
                             f"it has none for {missing}")
    if args.center and not args.split:
        raise ValueError("--center selects experiment sources: use it with --split")
    if args.layout and not args.input:
        raise ValueError("--layout reads an --input folder")
    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")


def _prompts_read_as(model, prompts: list[str] | None) -> dict[str, dict[str, float]]:
    """For a text-prompt model: the structures each free-text prompt is read as, with weights of at least 0.01, so a user sees which structure a
    phrasing was taken for (a structure the vocabulary lacks is read as the nearest one it has)."""
    encoder = getattr(getattr(model, "net", None), "prompt_encoder", None)
    if not prompts or encoder is None:  # the fixed-head baseline reads no text
        return {}
    weights = encoder.structure_weights(list(prompts))
    return {prompt: {key: round(w, 3) for key, w in sorted(weights[prompt].items(), key=lambda kv: -kv[1]) if w >= 0.01}
            for prompt in prompts}


def predict_main(argv: list[str]) -> int:
    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    try:
        _check_arguments(args)
        checkpoint = Path(args.ckpt_path).expanduser()
        if not checkpoint.is_file():
            raise ValueError(f"--ckpt_path {checkpoint} is not a file")
        experiment = [word for config in args.config for word in ("--config", config)] + overrides
        cli = build_experiment(experiment)
        datamodule, model = cli.datamodule, cli.model
        if args.split:
            cases, roots = _split_cases(args, datamodule)
        else:
            cases, roots = _input_cases(args, datamodule.preprocessing), [Path(args.input).expanduser().resolve()]
        if args.task and args.split:  # --task picks that task's sources
            tasks_found = sorted({c.task for c in cases})
            cases = [c for c in cases if c.task == args.task]
            if not cases:
                raise ValueError(f"the experiment has no {args.split} source of task {args.task!r}; it has {tasks_found}")
        output = Path(args.output).expanduser()
        _refuse_inputs_as_output(output, cases, roots)
        paths = _output_paths(cases, args, output)
        written = [*paths.values(), output / "prediction.json"]
        if args.probabilities:
            written += [LabelMapWriter.probability_path(p) for p in paths.values()]
        existing = [str(p) for p in written if p.exists()]
        if existing and not args.overwrite:
            raise ValueError(f"{len(existing)} prediction file(s) exist, e.g. {existing[0]}; "
                             "choose a new --output or pass --overwrite")
        problems = problems_of(check_cases(cases, require_label=False))
        if problems:
            raise ValueError(f"{len(problems)} problem(s) with the input images:\n  " + "\n  ".join(problems))
        load_weights(model, checkpoint, experiment_settings(cli))
    except (ValueError, FileExistsError, RuntimeError, KeyError) as err:
        parser.error(str(err))
    tasks = sorted({c.task for c in cases})
    structures = None if args.prompts else (args.structures or (list(vocabulary.TASKS[args.task].structures)
                                                                if args.task else None))
    datasets = []
    for task_key in tasks:  # one prompt set per task when predicting several tasks' sources
        task_structures = structures or (None if args.prompts else list(vocabulary.TASKS[task_key].structures))
        datasets.append(PredictionDataset([c for c in cases if c.task == task_key], datamodule.preprocessing,
                                          structures=task_structures, prompts=args.prompts))
    description = {"checkpoint": str(checkpoint.resolve()), "config": args.config, "overrides": overrides,
                   "structures": structures, "prompts": args.prompts,
                   "codes": ({str(i + 1): p for i, p in enumerate(args.prompts)} if args.prompts else
                             {t: {s: vocabulary.LAYOUTS[vocabulary.TASKS[t].layout].structures[s][0]
                                  for s in (structures or vocabulary.TASKS[t].structures)} for t in tasks}),
                   "probabilities": "4D float32, prompts on the last axis, in this order" if args.probabilities else None,
                   "files": {uid: str(p.relative_to(output)) for uid, p in paths.items()}}
    read_as = _prompts_read_as(model, args.prompts)
    if read_as:
        description["read_as"] = read_as
        for prompt, weights in read_as.items():
            print(f"{prompt!r} is read as " + ", ".join(f"{key} {weight:.2f}" for key, weight in weights.items()))
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(description, indent=2), output / "prediction.json")
    trainer_config = cli.config["trainer"]
    trainer = L.Trainer(accelerator=trainer_config["accelerator"], devices=args.devices,
                        precision=trainer_config["precision"], logger=False, enable_checkpointing=False,
                        enable_model_summary=False,
                        callbacks=[LabelMapWriter(paths, probabilities=args.probabilities), progress_bar()])
    for dataset in datasets:
        loader = DataLoader(dataset, batch_size=1, collate_fn=collate_volume, num_workers=datamodule.num_workers)
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    print(f"{len(paths)} prediction(s) written under {output} (index: {output / 'prediction.json'})")
    return 0
