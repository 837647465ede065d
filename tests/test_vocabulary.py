import numpy as np
import pytest

import vocabulary


def test_every_task_structure_is_known_and_annotated_by_some_layout():
    for task in vocabulary.TASKS.values():
        for key in task.structures:
            assert key in vocabulary.STRUCTURES
            assert any(key in layout.structures for layout in vocabulary.LAYOUTS.values())


def test_myops_myocardium_includes_pathology_and_scar_is_2221():
    label = np.array([0, 200, 500, 600, 1220, 2221], dtype=np.int16)
    masks = vocabulary.binary_masks(label, "myops", ["lv", "myo", "scar", "edema"])
    assert masks[0].tolist() == [False, False, True, False, False, False]
    assert masks[1].tolist() == [False, True, False, False, True, True]
    assert masks[2].tolist() == [False, False, False, False, False, True]
    assert masks[3].tolist() == [False, False, False, False, True, False]


def test_lascarqs_any_nonzero_is_atrium():
    masks = vocabulary.binary_masks(np.array([0, 1, 255]), "lascarqs", ["la"])
    assert masks[0].tolist() == [False, True, True]


def test_unannotated_structure_is_reported_not_negative():
    assert vocabulary.annotated("lascarqs", ["la", "lv"]) == [True, False]
    with pytest.raises(ValueError, match="does not annotate"):
        vocabulary.binary_masks(np.zeros(3), "lascarqs", ["lv"])


def test_prompts_name_structure_and_modality_and_synonyms_vary():
    import random

    assert vocabulary.prompt("la", "LGE") == "left atrium in LGE MRI"
    phrasings = {vocabulary.prompt("myo", "CT", random.Random(i)) for i in range(50)}
    assert len(phrasings) == len(vocabulary.STRUCTURES["myo"].names)
    assert all(p.endswith(" in CT") for p in phrasings)


def test_prompt_wordings_vary_frame_and_modality_but_keep_a_name_and_a_modality():
    import random

    modality = vocabulary.MODALITIES["LGE"]
    worded = {vocabulary.prompt("scar", "LGE", None, random.Random(i)) for i in range(200)}
    frames = {t for t in vocabulary.PROMPT_TEMPLATES for p in worded
              for w in (modality.phrase, *modality.wordings) if p == t.format(name="myocardial scar", modality=w)}
    assert frames == set(vocabulary.PROMPT_TEMPLATES)  # every frame, always the canonical name here
    assert {w for w in (modality.phrase, *modality.wordings) for p in worded if w in p} == {modality.phrase, *modality.wordings}
    # the whitening's reference set holds every name in every frame and every modality wording
    reference = set(vocabulary.labelled_prompts())
    for name in vocabulary.STRUCTURES["scar"].names:
        assert {("scar", t.format(name=name, modality=modality.phrase)) for t in vocabulary.PROMPT_TEMPLATES} <= reference
        assert {("scar", f"{name} in {w}") for w in modality.wordings} <= reference


def test_unknown_task_and_layout_raise():
    with pytest.raises(ValueError, match="unknown task"):
        vocabulary.task("brain")
    with pytest.raises(ValueError, match="unknown label layout"):
        vocabulary.layout("acdc_v2")
