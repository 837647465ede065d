"""Issue 15: a structure's mask does not depend on which other prompts are asked with it, the
held-out phrasings are really unseen, and ``care-cardiac prompts`` scores every way of asking."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import vocabulary
from datamodules.collate import collate_volume
from datamodules.volumes import VolumeDataset
from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.command_line.main import main
from lightning_modules.evaluation.prompt_probe import HELDOUT_PROMPTS, heldout_prompts
from lightning_modules.inference.checkpoint_weights import experiment_settings
from lightning_modules.inference.postprocessing import PostProcessing
from lightning_modules.inference.predictor import PromptSet
from tests.test_cli import CONFIG, CSV_ONLY, SMALL

REPO = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)  # built once per setting (read-only here; the phantoms are the session's)
def _phantom_model(extra: tuple[str, ...]):
    torch.manual_seed(0)
    cli = build_experiment(["--config", CONFIG, *SMALL, *CSV_ONLY, *extra])
    cli.datamodule.setup("test")
    return cli.model.eval(), cli.datamodule


def test_a_prompt_asked_alone_gets_what_it_gets_in_its_task_set(in_run_folder):
    """Every phantom test case of each task (whole-volume inference as ``test`` runs it): each
    structure asked alone has the probabilities it has beside its task's other structures,
    exactly (the decoder's prompts do not attend to each other); the control: another
    structure's probabilities differ, so the comparison can fail."""
    model, data = _phantom_model(())
    first = {}  # one test case per task
    for case in data.cases("test"):
        first.setdefault(case.case.task, case)
    largest, control = 0.0, float("inf")
    with torch.no_grad():
        for item in VolumeDataset(list(first.values())):
            batch = collate_volume([item])
            prompts = batch["prompts"][0]
            # the full set and each prompt alone, decoded from one backbone pass per window
            # (equal to asking each set on its own: tests/test_networks.py)
            structures = batch["structures"]
            sets = [PromptSet(structures, prompts)] + [PromptSet([s], [p]) for s, p in zip(structures, prompts)]
            predictions = model.predictor.predict(batch, sets)
            together = predictions[0].probabilities
            alone = torch.cat([p.probabilities for p in predictions[1:]])
            largest = max(largest, float((alone - together).abs().max()))
            if len(prompts) > 1:
                control = min(control, float((alone[0] - together[1]).abs().max()))
    assert set(first) == {"la", "whs", "myops"}
    assert largest < 1e-5 and control > 1e-3


def test_scar_asked_alone_is_cut_to_the_myocardium_predicted_in_the_same_pass(in_run_folder):
    """``predict --structures scar``: the myocardium is asked beside it (one backbone pass), and
    the scar mask is what the full set's post-processing makes of the scar channel."""
    model, data = _phantom_model(())
    case = next(c for c in data.cases("test") if c.case.task == "myops")
    batch = collate_volume([VolumeDataset([case])[0]])
    decoded = []
    original = model.predictor.__class__._probabilities

    def recording(self, batch, prompt_sets):
        decoded.append(prompt_sets)
        return original(self, batch, prompt_sets)

    predictor = model.predictor
    predictor._probabilities = recording.__get__(predictor)
    full = predictor.predict(batch)[0]
    scar = predictor.predict(batch, [PromptSet(["scar"], [batch["prompts"][0][2]])])[0]
    assert batch["structures"] == ["lv", "myo", "scar"]
    # nothing missing: the task's prompts only; scar alone: the myocardium asked beside it, in the same pass
    assert decoded == [[batch["prompts"][0]], [[batch["prompts"][0][2]], [vocabulary.prompt("myo", batch["modality"])]]]
    torch.testing.assert_close(scar.probabilities[0], full.probabilities[2], rtol=0, atol=1e-5)
    expected = model.postprocessing.masks(full.probabilities, batch["structures"])[2].numpy()
    assert scar.masks.shape == (1, *expected.shape) and (scar.masks[0] == expected).all()


def test_a_structure_asked_without_its_container_is_cut_to_the_predicted_container():
    post = PostProcessing(contained_in={"scar": "myo"})
    scar = torch.zeros(1, 6, 6)
    scar[0, :, :3] = 0.9
    myo = torch.zeros(6, 6)
    myo[:2] = 0.8
    assert post.missing_containers(["scar"]) == ["myo"] and post.missing_containers(["lv", "myo", "scar"]) == []
    assert post.missing_containers([None]) == []  # free-text prompts have no container
    assert post.masks(scar, ["scar"]).sum() == 18  # nothing to cut it to
    cut = post.masks(scar, ["scar"], containers={"myo": myo})
    assert cut.sum() == 6 and cut[0, :2, :3].all()


def _training_texts() -> str:
    """Every source file that shapes training (code and experiment YAMLs), as one text."""
    files = [p for folder in ("vocabulary", "datamodules", "networks", "lightning_modules", "experiments")
             for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".yaml") and not p.name.startswith("heldout")]
    return "\n".join(p.read_text() for p in files).lower()


SELECTION_PROMPTS = HELDOUT_PROMPTS.with_name("heldout_prompts_selection.yaml")


@pytest.mark.parametrize("listing_path", [HELDOUT_PROMPTS, SELECTION_PROMPTS], ids=["final", "selection"])
def test_heldout_phrasings_are_unseen_and_cover_every_structure(listing_path):
    listing = yaml.safe_load(listing_path.read_text())
    assert set(listing["structures"]) == set(vocabulary.STRUCTURES)
    assert set(listing["modalities"]) == set(vocabulary.MODALITIES)
    vocabulary_names = {name.lower() for s in vocabulary.STRUCTURES.values() for name in s.names}
    modality_phrases = {phrase.lower() for phrase in vocabulary.MODALITY_PHRASES.values()}
    training = _training_texts()
    trained_prompts = {prompt.lower() for _, prompt in vocabulary.labelled_prompts()}
    for structure, phrasings in listing["structures"].items():
        assert len(phrasings) >= 3, structure
        # one abbreviation (an upper-case word of 2-3 letters, or such as "Ao", "AAo") per structure; edema has none in use
        assert structure == "edema" or any(re.search(r"\b(?:[A-Z]{2,3}|[A-Z]{1,2}[a-z])\b", p.replace("{modality}", "")) for p in phrasings), structure
        for modality in listing["modalities"]:
            for prompt in heldout_prompts(structure, modality, listing_path):
                name = prompt.lower().replace(listing["modalities"][modality].lower(), "{modality}")
                assert prompt.lower() not in trained_prompts and prompt.lower() not in training, prompt
                wording = name.replace("{modality}", "").strip(" :")
                for part in re.split(r" (?:in|on) $|^: ", wording):
                    assert part.strip() not in vocabulary_names, prompt
    for wording in listing["modalities"].values():
        assert wording.lower() not in modality_phrases and wording.lower() not in training, wording


def test_the_selection_list_shares_no_phrasing_with_the_final_list():
    """Settings are chosen on one list and reported on the other: no structure
    phrasing or modality wording is in both."""
    final, selection = (yaml.safe_load(p.read_text()) for p in (HELDOUT_PROMPTS, SELECTION_PROMPTS))
    for key in ("structures", "modalities"):
        assert set(final[key]) == set(selection[key])
    for structure, phrasings in final["structures"].items():
        assert not {p.lower() for p in phrasings} & {p.lower() for p in selection["structures"][structure]}, structure
    assert not {w.lower() for w in final["modalities"].values()} & {w.lower() for w in selection["modalities"].values()}


@pytest.mark.slow
def test_prompts_command_scores_every_way_of_asking_on_phantoms(in_run_folder):
    cli = build_experiment(["--config", CONFIG, *SMALL, *CSV_ONLY])
    torch.save({"state_dict": cli.model.state_dict(), "experiment_config": yaml.safe_dump(experiment_settings(cli))},
               in_run_folder / "start.ckpt")
    # MyoPS only, to keep it short: the whole-heart task is the same code with more prompts
    assert main(["prompts", "--config", CONFIG, *SMALL, *CSV_ONLY, "--ckpt_path", "start.ckpt",
                 "--split", "test", "--output", "prompts.csv", "--data.tasks", "[myops]"]) == 0
    rows = pd.read_csv(in_run_folder / "prompts.csv")
    assert set(rows.kind) == {"full", "alone", "heldout", "absent"} and set(rows.task) == {"myops"}
    # every annotated structure of every test case asked 5 ways, and the aorta once per case (the default --absent)
    for (case, structure), part in rows[rows.kind != "absent"].groupby(["uid", "structure"]):
        assert sorted(part.kind) == ["alone", "full", "heldout", "heldout", "heldout"], (case, structure)
    assert set(rows[rows.kind != "absent"].structure) == {"lv", "myo", "scar"}
    absent = rows[rows.kind == "absent"]
    assert set(absent.structure) == {"aorta"} and len(absent) == rows.uid.nunique() and absent.pred_ml.notna().all()
    assert rows[rows.kind == "alone"].agreement.notna().all() and rows[rows.kind == "full"].agreement.isna().all()
    # a second run (LA only, nothing asked where absent) never overwrites the first one's rows
    assert main(["prompts", "--config", CONFIG, *SMALL, *CSV_ONLY, "--ckpt_path", "start.ckpt",
                 "--split", "test", "--output", "prompts.csv", "--absent", "--data.tasks", "[la]"]) == 0
    second = [p for p in in_run_folder.glob("prompts*.csv") if p.name != "prompts.csv"]
    assert len(second) == 1 and set(pd.read_csv(second[0]).kind) == {"full", "alone", "heldout"}
    # a checkpoint of another network is refused before any case is read
    with pytest.raises(SystemExit):
        main(["prompts", "--config", CONFIG, *SMALL, *CSV_ONLY, "--model.net.init_args.decoder.init_args.token_grid", "4", "--ckpt_path", "start.ckpt",
              "--output", "x.csv"])
    assert not (in_run_folder / "x.csv").exists()
