"""What a case is prompted with: its task's structures, phrased for its modality."""

from __future__ import annotations

import random

from datamodules import vocabulary
from datamodules.case import Case


def prompt_fields(case: Case, rng: random.Random | None = None, synonym_probability: float = 0.5) -> dict:
    """Structures, prompt strings and annotation mask of a case.

    Only the case's task structures are prompted; the ones its layout does not annotate are
    kept (so tables stay aligned) but masked out, never treated as negatives.
    Evaluation passes ``rng=None`` (canonical phrasing); training phrases each prompt with a
    random name of the structure with ``synonym_probability``, else with the canonical one.
    """
    structures = list(vocabulary.TASKS[case.task].structures)
    return {
        "structures": structures,
        "prompts": [vocabulary.prompt(s, case.modality, rng if rng and rng.random() < synonym_probability else None)
                    for s in structures],
        "annotated": vocabulary.annotated(case.layout, structures),
    }
