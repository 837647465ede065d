"""What a case is prompted with: its task's structures, phrased for its modality."""

from __future__ import annotations

import random

import vocabulary
from datamodules.case import Case


def prompt_fields(case: Case, rng: random.Random | None = None, synonym_probability: float = 0.5,
                  wording_probability: float = 0.5) -> dict:
    """Structures, prompt strings and annotation mask of a case.

    Only the case's task structures are prompted (in training also those the task trains but
    does not score, ``Task.also_trained``); the ones its layout does not annotate, or its source
    leaves out (``Case.structures``), are kept (so tables stay aligned) but masked out, never
    treated as negatives.
    Evaluation passes ``rng=None`` (canonical phrasing, the task's full set in table order);
    training phrases each prompt with a random name of the structure with
    ``synonym_probability``, else with the canonical one, and with ``wording_probability`` writes a prompt in a random sentence frame and modality
    wording (``vocabulary.PROMPT_TEMPLATES``, ``Modality.wordings``).
    """
    task = vocabulary.TASKS[case.task]
    structures = list(task.structures if rng is None else task.trained_structures)
    annotated = [known and case.trains(key)
                 for key, known in zip(structures, vocabulary.annotated(case.layout, structures))]
    prompts = []
    for key in structures:
        name_rng = rng if rng and rng.random() < synonym_probability else None
        wording_rng = rng if rng and wording_probability > 0 and rng.random() < wording_probability else None
        prompts.append(vocabulary.prompt(key, case.modality, name_rng, wording_rng))
    return {
        "structures": structures,
        "prompts": prompts,
        "annotated": annotated,
    }
