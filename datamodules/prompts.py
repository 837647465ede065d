"""What a case is prompted with: its task's structures, phrased for its modality."""

from __future__ import annotations

import random

from datamodules import vocabulary
from datamodules.case import Case


def prompt_fields(case: Case, rng: random.Random | None = None, synonym_probability: float = 0.5,
                  subset_probability: float = 0.0, wording_probability: float = 0.0) -> dict:
    """Structures, prompt strings and annotation mask of a case.

    Only the case's task structures are prompted; the ones its layout does not annotate are
    kept (so tables stay aligned) but masked out, never treated as negatives.
    Evaluation passes ``rng=None`` (canonical phrasing, the task's full set in table order);
    training phrases each prompt with a random name of the structure with
    ``synonym_probability``, else with the canonical one, and with ``subset_probability``
    prompts a random non-empty subset of the annotated structures in random order instead of
    the full set (so a prompt asked alone or with others is a prompt set seen in training),
    and with ``wording_probability`` writes a prompt in a random sentence frame and modality
    wording (``vocabulary.PROMPT_TEMPLATES``, ``Modality.wordings``).
    """
    structures = list(vocabulary.TASKS[case.task].structures)
    annotated = vocabulary.annotated(case.layout, structures)
    # no draw when the option is off, so runs without it keep their random streams
    if rng is not None and subset_probability > 0 and rng.random() < subset_probability:
        chosen = [key for key, known in zip(structures, annotated) if known]
        rng.shuffle(chosen)
        structures = chosen[:rng.randint(1, len(chosen))]
        annotated = [True] * len(structures)
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
