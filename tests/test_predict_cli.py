"""``care-cardiac predict`` and ``evaluate`` end to end on tiny phantoms: files on the input
grids in the task codes, refusals before any work, and evaluate == test on the same weights."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import vocabulary
from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.command_line.main import main
from lightning_modules.inference.checkpoint_weights import experiment_settings
from tests.test_cli import CONFIG, CSV_ONLY, SMALL


@pytest.fixture
def checkpoint(in_run_folder):
    """The weights a fresh run of the small experiment starts from (seed 0), saved as fit would."""
    cli = build_experiment(["--config", CONFIG, *SMALL, *CSV_ONLY])
    path = in_run_folder / "start.ckpt"
    torch.save({"state_dict": cli.model.state_dict()}, path)
    return path


def _predict(*words):
    return main(["predict", "--config", CONFIG, *SMALL, *words])


@pytest.mark.slow
def test_predicted_files_match_their_images_evaluate_equals_test_and_the_notebook_runs(
        in_run_folder, checkpoint, phantom_root, monkeypatch):
    center = phantom_root / "myops" / "myops_c1" / "test"
    assert _predict("--ckpt_path", str(checkpoint), "--split", "test", "--center", "myops_c1", "whs_ct_a",
                    "--output", "pred", "--probabilities") == 0
    index = json.loads((in_run_folder / "pred" / "prediction.json").read_text())
    assert index["codes"]["myops"] == {"lv": 500, "myo": 200, "scar": 2221}
    for image in sorted(center.rglob("*_LGE.nii.gz")):
        out = in_run_folder / "pred" / "myops" / "myops_c1" / image.name.replace("_LGE", "_gd")
        written, source = nib.load(out), nib.load(image)
        assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
        assert set(np.unique(np.asanyarray(written.dataobj))) <= {0, 200, 500, 2221}
        probabilities = nib.load(str(out).replace(".nii.gz", "_probabilities.nii.gz"))
        assert probabilities.shape == (*source.shape, 3)
    assert list((in_run_folder / "pred" / "whs" / "whs_ct_a").glob("*_label.nii.gz"))

    # `test` on the same weights scores exactly what `evaluate` scores from the written files
    main(["test", "--config", CONFIG, *SMALL, *CSV_ONLY])
    tested = pd.read_csv(next((in_run_folder / "results").rglob("test_cases.csv")))
    for task, name in (("myops", "myops_c1"), ("whs", "whs_ct_a")):
        assert main(["evaluate", "--task", task, "--pred", f"pred/{task}/{name}", "--out", f"{name}.csv",
                     "--ref", str(phantom_root / task / name / "test"), "--center", name]) == 0
        scored = pd.read_csv(in_run_folder / f"{name}.csv")
        expected = tested[tested.center == name]
        merged = expected.merge(scored, on=["case_id", "structure"], suffixes=("_test", "_evaluate"))
        assert len(merged) == len(expected) == len(scored) > 0
        for metric in ("dice", "hd", "hd95"):
            np.testing.assert_allclose(merged[f"{metric}_test"], merged[f"{metric}_evaluate"], atol=1e-5)
        assert (in_run_folder / f"{name}_leaderboard.csv").exists()

    # the OOD notebook runs on these results, top to bottom, and draws the worst cases' overlays
    import nbformat
    from nbclient import NotebookClient

    from tests.conftest import REPO

    # rows as `care-cardiac prompts` writes them, for the notebook's prompt-robustness section
    asked = [("full", "left ventricle blood pool in LGE MRI", 0.9, None), ("alone", "left ventricle blood pool in LGE MRI", 0.9, 1.0),
             ("heldout", "LV cavity in late gadolinium enhanced cardiac MR", 0.8, 0.95)]
    identity = {"uid": "u1", "case_id": "c1", "task": "myops", "center": "x", "modality": "LGE", "role": "ID"}
    pd.DataFrame([{**identity, "structure": "lv", "prompt": prompt, "kind": kind, "dice": dice, "hd95": 1.0,
                   "pred_ml": 1.0, "ref_ml": 1.0, "agreement": agreement} for kind, prompt, dice, agreement in asked]
                 + [{**identity, "structure": "aorta", "prompt": "ascending aorta in LGE MRI", "kind": "absent",
                     "pred_ml": 2.0}]).to_csv(in_run_folder / "prompt_rows.csv", index=False)
    notebook = nbformat.read(REPO / "notebooks" / "ood_analysis.ipynb", as_version=4)
    monkeypatch.setenv("CARE_RESULTS", str(in_run_folder))
    monkeypatch.setenv("CARE_PREDICTIONS", str(in_run_folder / "pred"))
    monkeypatch.setenv("CARE_WORST", "3")
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "plots show 'version_0': 10 cases" in text and "dice ID" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2 + 3 + 1  # two plots, three overlays, prompts
    assert "prompt_rows: 1 cases" in text and "absent_ml_mean" in text


@pytest.mark.slow
def test_free_text_prompts_on_one_image(in_run_folder, checkpoint, phantom_root):
    image = next((phantom_root / "whs" / "whs_ct_a" / "test").rglob("*_image.nii.gz"))
    assert _predict("--ckpt_path", str(checkpoint), "--input", str(image), "--output", "free",
                    "--prompts", "the aorta", "left ventricle blood pool in CT", "--task", "whs") == 0
    out = in_run_folder / "free" / image.name.replace("_image.nii.gz", "_prompts.nii.gz")
    assert set(np.unique(np.asanyarray(nib.load(out).dataobj))) <= {0, 1, 2}
    description = json.loads((in_run_folder / "free" / "prediction.json").read_text())
    assert description["codes"] == {"1": "the aorta", "2": "left ventricle blood pool in CT"}
    # the experiment reads prompts as structures, and the index says which each was read as
    assert {p: list(w)[0] for p, w in description["read_as"].items()} == {
        "the aorta": "aorta", "left ventricle blood pool in CT": "lv"}


@pytest.mark.slow
def test_predict_refuses_bad_requests_before_any_work(in_run_folder, checkpoint, phantom_root, capsys):
    folder = phantom_root / "la" / "la_utah" / "test"
    refusals = [
        (["--ckpt_path", "missing.ckpt", "--input", str(folder), "--task", "la", "--output", "o"], "is not a file"),
        (["--ckpt_path", str(checkpoint), "--input", str(folder), "--task", "la", "--output", str(folder / "p")],
         "inside) an input folder"),
        (["--ckpt_path", str(checkpoint), "--input", str(folder), "--prompts", "heart", "--output", "o"],
         "need --modality"),
        (["--ckpt_path", str(checkpoint), "--input", str(folder), "--task", "la", "--structures", "scar",
          "--output", "o"], "none for ['scar']"),
        (["--ckpt_path", str(checkpoint), "--split", "test", "--center", "nowhere", "--task", "la", "--output", "o"],
         "no test source"),
    ]
    garbage = in_run_folder / "broken" / "broken_image.nii.gz"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x1f\x8b not really a gzip")
    wider = build_experiment(["--config", CONFIG, *SMALL[:-1], "16", *CSV_ONLY])  # base_filters 16, not 8
    torch.save({"state_dict": wider.model.state_dict()}, in_run_folder / "other.ckpt")
    # same weight shapes, another network: its prompt queries read a coarser token grid
    independent = build_experiment(["--config", CONFIG, *SMALL, *CSV_ONLY,
                                    "--model.net.init_args.decoder.init_args.token_grid", "4"])
    torch.save({"state_dict": independent.model.state_dict(),
                "experiment_config": yaml.safe_dump(experiment_settings(independent))}, in_run_folder / "independent.ckpt")
    refusals += [
        (["--ckpt_path", str(in_run_folder / "independent.ckpt"), "--input", str(folder), "--task", "la", "--output", "o"],
         "model.net.init_args.decoder.init_args.token_grid: checkpoint 4, here 8"),
        (["--ckpt_path", str(checkpoint), "--input", str(garbage), "--task", "la", "--output", "o"],
         f"{garbage}: image file is unreadable"),
        (["--ckpt_path", str(in_run_folder / "other.ckpt"), "--input", str(folder), "--task", "la", "--output", "o"],
         "does not fit this experiment's model"),
    ]
    for words, message in refusals:
        with pytest.raises(SystemExit) as stop:
            _predict(*words)
        assert stop.value.code == 2 and message in capsys.readouterr().err, message
    assert not (in_run_folder / "o").exists()
    # an output that exists is kept unless asked
    assert _predict("--ckpt_path", str(checkpoint), "--input", str(folder), "--task", "la", "--output", "o",
                    "--layout", "lascarqs") == 0
    written = next((in_run_folder / "o").rglob("atriumSegImgMO.nii.gz"))
    source = nib.load(next(folder.rglob(f"{written.parent.name}/enhanced.nii.gz")))
    label = nib.load(written)
    # the file's own geometry codes and the layout's label type, as a reader of the release expects
    assert label.header.get_data_dtype() == np.uint8  # LAScarQS' 255
    assert int(label.header["qform_code"]) == int(source.header["qform_code"])
    assert int(label.header["sform_code"]) == int(source.header["sform_code"])
    assert np.allclose(label.affine, source.affine)
    before = written.stat().st_mtime_ns
    with pytest.raises(SystemExit):
        _predict("--ckpt_path", str(checkpoint), "--input", str(folder), "--task", "la", "--output", "o",
                 "--layout", "lascarqs")
    assert "exist" in capsys.readouterr().err and written.stat().st_mtime_ns == before
    assert _predict("--ckpt_path", str(checkpoint), "--input", str(folder), "--task", "la", "--output", "o",
                    "--layout", "lascarqs", "--overwrite") == 0  # asked: replaced
    assert written.stat().st_mtime_ns != before


def test_evaluate_refuses_unpaired_and_misaligned_files(tmp_path, capsys):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    label = np.zeros((6, 6, 4), np.int16)
    label[1:4, 1:4, 1:3] = 500
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("a_gd.nii.gz", "b_gd.nii.gz"):
        nib.save(nib.Nifti1Image(label, affine), tmp_path / "ref" / name)
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "pred" / "a_gd.nii.gz")
    args = ["evaluate", "--task", "myops", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
            "--out", str(tmp_path / "scores.csv")]
    with pytest.raises(SystemExit):
        main(args)
    assert "1 reference label(s) have no prediction" in capsys.readouterr().err
    nib.save(nib.Nifti1Image(label, np.diag([1.0, 1.0, 2.5, 1.0])), tmp_path / "pred" / "b_gd.nii.gz")
    with pytest.raises(SystemExit):
        main(args)
    assert "b_gd.nii.gz: affine differs" in capsys.readouterr().err
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "pred" / "b_gd.nii.gz")
    assert main(args) == 0
    rows = pd.read_csv(tmp_path / "scores.csv")
    assert len(rows) == 2 * len(vocabulary.TASKS["myops"].structures)
    assert rows[rows.structure == "lv"].dice.tolist() == [1.0, 1.0]  # perfect LV; myo and scar both empty: 1
    assert (rows.hd == 0).all()


def test_predict_says_which_structure_a_free_text_prompt_is_read_as():
    """The prompt encoder reads a prompt as structures; ``predict`` reports them (a prompt for a
    structure the vocabulary lacks shows which structure it was taken for), and says nothing for
    the fixed-head baseline, which reads no text."""
    from types import SimpleNamespace

    from lightning_modules.command_line.predict import _prompts_read_as
    from networks.prompt_encoder import TextPromptEncoder

    model = SimpleNamespace(net=SimpleNamespace(prompt_encoder=TextPromptEncoder(embed_dim=8)))
    read = _prompts_read_as(model, ["left atrial blood pool in CT", "ascending aorta in MRI"])
    assert list(read["left atrial blood pool in CT"])[0] == "la" and read["left atrial blood pool in CT"]["la"] > 0.99
    assert list(read["ascending aorta in MRI"])[0] == "aorta"
    assert all(w >= 0.01 for weights in read.values() for w in weights.values())
    assert _prompts_read_as(model, None) == {}
    other = SimpleNamespace(net=SimpleNamespace())
    assert _prompts_read_as(other, ["left atrial blood pool in CT"]) == {}
