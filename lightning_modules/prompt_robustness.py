"""``care-cardiac prompts``: does a structure get the same mask however it is asked?

For every case of a split, with a trained checkpoint, each annotated structure is scored when
asked (a) with its task's full prompt set in canonical wording (what ``test`` scores), (b) alone,
(c) alone with each held-out phrasing (``tests/data/heldout_prompts.yaml``: wordings that no
training code uses), and (d) structures absent from the task's images (``--absent``) are asked
for, to see what the model returns where nothing should be. Each row carries Dice / HD95 against
the reference and ``agreement``, the Dice between this mask and the one it should equal (alone:
the full set's; held-out phrasing: the canonical prompt alone). The rows go to a new CSV that
the OOD notebook reads (section "Prompt robustness").
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import pandas as pd
import torch
import yaml

from datamodules import vocabulary
from datamodules.collate import collate_volume
from datamodules.geometry import spacing_of
from datamodules.volumes import VolumeDataset
from lightning_modules.metrics import score_structure, volume_ml
from lightning_modules.module import default_inferer
from lightning_modules.results_io import unused_path, write_csv_atomic

HELDOUT_PROMPTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "heldout_prompts.yaml"
# structures that the task's images do not show (the aorta leaves the heart above a short-axis
# stack's base) or that no layout of the task annotates, and so may be absent (scar in WHS / LA)
DEFAULT_ABSENT = ["myops:aorta", "whs:scar", "la:scar"]
IDENTITY = ("uid", "case_id", "task", "center", "modality", "role")


@functools.lru_cache(maxsize=None)
def _listing(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def heldout_prompts(structure: str, modality: str, path: Path = HELDOUT_PROMPTS) -> list[str]:
    """The held-out phrasings of ``structure`` for a case of ``modality`` (the modality written as the list writes it)."""
    listing = _listing(Path(path))
    if structure not in listing["structures"]:
        raise ValueError(f"{path} has no phrasings of {structure!r}")
    if modality not in listing["modalities"]:
        raise ValueError(f"{path} has no wording of modality {modality!r}; it has {sorted(listing['modalities'])}")
    return [text.format(modality=listing["modalities"][modality]) for text in listing["structures"][structure]]


def _asked(batch: dict, structures: list[str], prompts: list[str], annotated: bool) -> dict:
    return {**batch, "structures": structures, "prompts": [prompts], "annotated": [annotated] * len(structures)}


@torch.no_grad()
def case_rows(model, batch: dict, heldout_path: Path = HELDOUT_PROMPTS, absent: list[str] = ()) -> list[dict]:
    """The rows of one case (a ``collate_volume`` batch with its reference): full set, alone,
    held-out phrasings, absent structures.

    Every way of asking is a prompt set of its own, and all of them are decoded from one
    backbone pass per window (``PromptSegmenter.forward_prompt_sets``): set by set, the logits
    are those of asking that set alone, at the cost of one inference instead of one per set.
    """
    spacing = spacing_of(batch["original_affine"])
    identity = {key: batch[key] for key in IDENTITY}
    modality = batch["modality"]
    known = [s for s, a in zip(batch["structures"], batch["annotated"]) if a]
    reference = {s: batch["reference"][i] for i, s in enumerate(batch["structures"])}
    # (kind, structures, prompts) of each set; the full set first, as `test` asks it
    sets = [("full", known, [vocabulary.prompt(s, modality) for s in known])]
    sets += [("alone", [s], [vocabulary.prompt(s, modality)]) for s in known]
    sets += [("heldout", [s], [text]) for s in known for text in heldout_prompts(s, modality, heldout_path)]
    absent_here = [entry.split(":")[1] for entry in absent if entry.split(":")[0] == batch["task"]]
    sets += [("absent", [s], [vocabulary.prompt(s, modality)]) for s in absent_here]
    probabilities = model.probabilities(batch, prompt_sets=[prompts for _, _, prompts in sets]).split(
        [len(prompts) for _, _, prompts in sets])
    # a structure asked alone is cut to its container asked alone (as `predict --structures` does)
    alone_probabilities = {structures[0]: p[0] for (kind, structures, _), p in zip(sets, probabilities) if kind == "alone"}
    masks = []
    for (kind, structures, prompts), p in zip(sets, probabilities):
        containers = {c: alone_probabilities[c] for c in model.postprocessing.missing_containers(structures)
                      if c in alone_probabilities}
        asked = _asked(batch, structures, prompts, kind != "absent")
        masks.append(model.label_and_masks(asked, p, containers or None)[1])
    full = dict(zip(known, masks[0]))
    alone = {structures[0]: m[0] for (kind, structures, _), m in zip(sets, masks) if kind == "alone"}
    rows = []
    for (kind, structures, prompts), mask in zip(sets, masks):
        for structure, prompt, predicted in zip(structures, prompts, mask):
            if kind == "absent":
                scores = {"pred_ml": volume_ml(predicted, spacing)}
            else:
                scores = score_structure(predicted, reference[structure], spacing)
            agree_with = {"alone": full, "heldout": alone}.get(kind, {}).get(structure)
            agreement = score_structure(predicted, agree_with, spacing)["dice"] if agree_with is not None else None
            rows.append({**identity, "structure": structure, "prompt": prompt, "kind": kind, **scores,
                         "agreement": agreement})
    return rows


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task, modality and structure: Dice with the full set, alone, with held-out phrasings
    (mean and worst phrasing, as a mean over cases), the agreement of alone with full (mean and
    worst case), and the predicted volume of absent structures."""
    keys = ["task", "modality", "structure"]
    asked = frame[frame.kind != "absent"]
    out = asked.pivot_table(index=keys, columns="kind", values="dice", aggfunc="mean")
    alone = asked[asked.kind == "alone"].groupby(keys).agreement
    out["alone_vs_full_mean"], out["alone_vs_full_min"] = alone.mean(), alone.min()
    heldout = asked[asked.kind == "heldout"].groupby(keys + ["prompt"]).dice.mean()
    out["heldout_worst"] = heldout.groupby(level=keys).min()
    absent = frame[frame.kind == "absent"].groupby(keys).pred_ml
    missing = pd.DataFrame({"absent_ml_mean": absent.mean(), "absent_ml_max": absent.max()})
    return pd.concat([out, missing]).reset_index() if not missing.empty else out.reset_index()


def prompts_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="care-cardiac prompts",
        description="Score each structure asked alone, with its task's prompts, with held-out phrasings, "
                    "and absent structures (issue 15). Extra words are experiment overrides (--data.*, --model.*).")
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable)")
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--output", required=True, help="CSV to write (a new name is chosen if it exists)")
    parser.add_argument("--heldout", default=str(HELDOUT_PROMPTS), help="YAML of held-out phrasings")
    parser.add_argument("--absent", nargs="*", default=DEFAULT_ABSENT, help="TASK:STRUCTURE asked where absent")
    args, overrides = parser.parse_known_args(argv)
    from lightning_modules.checkpoint_weights import experiment_settings, load_weights
    from lightning_modules.experiment import build_experiment

    for entry in args.absent:
        if entry.count(":") != 1 or entry.split(":")[1] not in vocabulary.STRUCTURES:
            parser.error(f"--absent {entry!r}: write TASK:STRUCTURE with a known structure")
    checkpoint = Path(args.ckpt_path).expanduser()
    if not checkpoint.is_file():
        parser.error(f"--ckpt_path {checkpoint} is not a file")
    cli = build_experiment([w for c in args.config for w in ("--config", c)] + overrides)
    datamodule, model = cli.datamodule, cli.model
    try:
        load_weights(model, checkpoint, experiment_settings(cli))
    except ValueError as err:
        parser.error(str(err))
    model.eval()
    datamodule.setup("validate" if args.split == "val" else "test")
    if model.inferer is None:  # as the module's setup builds it in fit / test
        model.inferer = default_inferer(datamodule.patch_size)
    rows = []
    for item in VolumeDataset(datamodule.cases(args.split)):
        rows += case_rows(model, collate_volume([item]), Path(args.heldout), args.absent)
        print(f"{item['case_id']} ({item['modality']}): {len(rows)} rows", flush=True)
    frame = pd.DataFrame(rows)
    path = write_csv_atomic(frame, unused_path(args.output))
    with pd.option_context("display.max_columns", None, "display.width", 220, "display.precision", 3):
        print(summary(frame).to_string(index=False))
    print(f"rows written to {path}")
    return 0
