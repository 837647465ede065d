"""``care-cardiac prompts``: does a structure get the same mask however it is asked?

For every case of a split, with a trained checkpoint, each annotated structure is scored when
asked (a) with its task's full prompt set in canonical wording (what ``test`` scores), (b) alone,
(c) alone with each held-out phrasing (``vocabulary/heldout_prompts.yaml``: wordings that no
training code uses), and (d) structures absent from the task's images (``--absent``) are asked
for, to see what the model returns where nothing should be. Each row carries Dice / HD95 against
the reference and ``agreement``, the Dice between this mask and the one it should equal (alone:
the full set's; held-out phrasing: the canonical prompt alone). ``care-cardiac prompts`` writes
the rows to a new CSV that the OOD notebook reads (section "Prompt robustness").
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import pandas as pd
import torch
import yaml

import vocabulary
from datamodules.geometry import spacing_of
from lightning_modules.evaluation import aggregate
from lightning_modules.evaluation.metrics import score_structure, volume_ml
from lightning_modules.inference.predictor import PromptSet, WholeVolumePredictor

# package data, so a non-editable install finds them; the selection list is for choosing settings,
# the final list only reports (they share no phrasing: tests/test_prompt_robustness.py)
HELDOUT_PROMPTS = Path(str(resources.files("vocabulary") / "heldout_prompts.yaml"))
SELECTION_PROMPTS = HELDOUT_PROMPTS.with_name("heldout_prompts_selection.yaml")
# structures that the task's images do not show (the aorta leaves the heart above a short-axis
# stack's base) or that no layout of the task annotates, and so may be absent (scar in WHS / LA)
DEFAULT_ABSENT = ["myops:aorta", "whs:scar", "la:scar"]


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


@torch.no_grad()
def case_rows(predictor: WholeVolumePredictor, batch: dict, heldout_path: Path = HELDOUT_PROMPTS,
              absent: list[str] = ()) -> list[dict]:
    """The rows of one case (a ``collate_volume`` batch with its reference): full set, alone,
    held-out phrasings, absent structures.

    Every way of asking is a prompt set of its own, and all of them are decoded from one
    backbone pass per window (``WholeVolumePredictor.predict``): set by set, the masks are those
    of asking that set alone (a structure alone cut to its container alone, as ``predict
    --structures`` cuts it), at the cost of one inference instead of one per set.
    """
    spacing = spacing_of(batch["original_affine"])
    identity = {key: batch[key] for key in aggregate.CASE_KEYS}
    modality = batch["modality"]
    known = [s for s, a in zip(batch["structures"], batch["annotated"]) if a]
    reference = {s: batch["reference"][i] for i, s in enumerate(batch["structures"])}
    # (kind, structures, prompts) of each set; the full set first, as `test` asks it
    sets = [("full", known, [vocabulary.prompt(s, modality) for s in known])]
    sets += [("alone", [s], [vocabulary.prompt(s, modality)]) for s in known]
    sets += [("heldout", [s], [text]) for s in known for text in heldout_prompts(s, modality, heldout_path)]
    absent_here = [entry.split(":")[1] for entry in absent if entry.split(":")[0] == batch["task"]]
    sets += [("absent", [s], [vocabulary.prompt(s, modality)]) for s in absent_here]
    predictions = predictor.predict(batch, [PromptSet(list(structures), prompts) for _, structures, prompts in sets])
    masks = [p.masks for p in predictions]
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
