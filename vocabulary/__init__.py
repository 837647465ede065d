"""The one place that names every cardiac structure.

Each structure has a key, prompt phrasings (the first is canonical), and, per on-disk layout,
the label codes that make it up. Tasks, targets, loss, metrics, export and prompts all read
this module; nothing else holds a label table.

Label-code choices (documented here because they are modelling decisions, not file facts):
- MM-WHS: 205 myocardium, 420 LA, 500 LV, 550 RA, 600 RV, 820 ascending aorta, 850 pulmonary artery.
- MyoPS: LV = 500; myocardium = 200 + 1220 + 2221 (the whole myocardium, pathology inside it);
  scar = 2221; edema = 1220 (only when a task asks for it). RV (600) is labelled but not a
  MyoPS target of CARE: trained, not scored (``Task.also_trained``).
- LAScarQS: any non-zero code is the left atrium cavity (releases use 1 or 255); 255 is written.
- ACDC: 1 RV blood pool, 2 LV myocardium, 3 LV blood pool (the release's codes).
The first code of a structure in a layout is the code written when exporting predictions;
a layout's ``overlays`` (MyoPS: edema, then scar) are painted over the other structures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Structure:
    """A cardiac structure that can be prompted.

    Args:
        key: short identifier used in configs, tables and metric names.
        names: phrasings of the structure; the first is canonical (used at evaluation),
            the others are synonyms sampled in training so unseen phrasings still work.
    """

    key: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class LayoutCodes:
    """How one on-disk layout encodes structures in its label files.

    Args:
        structures: structure key -> label codes that together form it (first = export code).
        known_codes: every code a label file of this layout may contain (0 included);
            ``None`` when any code is allowed (see ``nonzero_structure``).
        nonzero_structure: structure that is "any non-zero voxel" (LAScarQS), or ``None``.
        overlays: structures that lie inside another one (their codes are part of it) and are
            written over it when exporting, in this order (later wins): MyoPS scar over edema
            over myocardium.
    """

    structures: dict[str, tuple[int, ...]]
    known_codes: frozenset[int] | None
    nonzero_structure: str | None = None
    overlays: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """A CARE-Cardiac task: which structures it scores and its default modality.

    Args:
        key: task key (``la``, ``whs``, ``myops``, ``acdc``).
        structures: structure keys scored (and prompted) for this task, in table order.
        default_modality: modality assumed when a caller names none.
        layout: the label layout of the task's own challenge release, whose codes predictions
            are exported in.
        also_trained: structures the release labels but the task does not score (MyoPS's RV):
            trained wherever a case labels them, never scored or exported for the task.
    """

    key: str
    structures: tuple[str, ...]
    default_modality: str
    layout: str
    also_trained: tuple[str, ...] = ()

    @property
    def trained_structures(self) -> tuple[str, ...]:
        """What a training patch of the task is prompted with: the scored structures, then the others."""
        return self.structures + self.also_trained


# Every chamber has an abbreviated synonym ("LV blood pool", "LA blood pool"): without the atria's,
# a user's "LA chamber" landed on the LV in embedding space (issue 15, benchmarks/RESULTS.md).
STRUCTURES: dict[str, Structure] = {
    s.key: s
    for s in (
        Structure("lv", ("left ventricle blood pool", "left ventricular cavity", "LV blood pool")),
        Structure("rv", ("right ventricle blood pool", "right ventricular cavity", "RV blood pool")),
        Structure("la", ("left atrium", "left atrial cavity", "left atrial blood pool", "LA blood pool")),
        Structure("ra", ("right atrium", "right atrial cavity", "right atrial blood pool", "RA blood pool")),
        Structure("myo", ("left ventricular myocardium", "LV myocardium", "myocardium of the left ventricle")),
        Structure("aorta", ("ascending aorta", "aorta", "aortic root and ascending aorta")),
        Structure("pa", ("pulmonary artery", "pulmonary trunk", "main pulmonary artery")),
        Structure("scar", ("myocardial scar", "myocardial infarct", "enhanced scar tissue")),
        Structure("edema", ("myocardial edema", "myocardial oedema", "edematous myocardium")),
    )
}

LAYOUTS: dict[str, LayoutCodes] = {
    "mmwhs": LayoutCodes(
        structures={"myo": (205,), "la": (420,), "lv": (500,), "ra": (550,), "rv": (600,),
                    "aorta": (820,), "pa": (850,)},
        known_codes=frozenset({0, 205, 420, 500, 550, 600, 820, 850}),
    ),
    "myops": LayoutCodes(
        structures={"lv": (500,), "rv": (600,), "myo": (200, 1220, 2221), "scar": (2221,),
                    "edema": (1220,)},
        known_codes=frozenset({0, 200, 500, 600, 1220, 2221}),
        overlays=("edema", "scar"),
    ),
    "lascarqs": LayoutCodes(structures={"la": (255,)}, known_codes=None, nonzero_structure="la"),
    "acdc": LayoutCodes(structures={"rv": (1,), "myo": (2,), "lv": (3,)}, known_codes=frozenset({0, 1, 2, 3})),
}

TASKS: dict[str, Task] = {
    "la": Task("la", ("la",), "LGE", layout="lascarqs"),
    "whs": Task("whs", ("lv", "rv", "la", "ra", "myo", "aorta", "pa"), "CT", layout="mmwhs"),
    "myops": Task("myops", ("lv", "myo", "scar"), "LGE", layout="myops", also_trained=("rv",)),
    "acdc": Task("acdc", ("lv", "rv", "myo"), "bSSFP", layout="acdc"),
}

@dataclass(frozen=True)
class Modality:
    """An imaging modality or MRI sequence that sources may name.

    Args:
        key: the name sources use (``LGE``, ``CT``...), exactly; case matters.
        phrase: how prompts say it ("left atrium in LGE MRI").
        wordings: other ways of writing it that training prompts may use
            (``data.prompt_wording_probability``), so a prompt is not tied to one spelling.
        normalisation: ``ct`` (Hounsfield window) or ``mri`` (percentile clip, then z-score):
            CT has an absolute intensity scale, MRI has none.
    """

    key: str
    phrase: str
    normalisation: str
    wordings: tuple[str, ...] = ()


# A closed list: a modality the code does not know would be normalised by guess (a CT named
# ``ct`` z-scored as MRI), so it is refused instead, naming the source.
MODALITIES: dict[str, Modality] = {m.key: m for m in (
    Modality("LGE", "LGE MRI", "mri", ("late gadolinium enhancement MRI", "LGE-MRI", "LGE")),
    Modality("CT", "CT", "ct", ("computed tomography", "CT scan", "contrast CT")),
    Modality("MRI", "MRI", "mri", ("magnetic resonance imaging", "MR image")),
    Modality("bSSFP", "bSSFP cine MRI", "mri", ("cine MRI", "bSSFP")),
    Modality("C0", "bSSFP cine MRI", "mri", ("cine MRI", "bSSFP")),  # MyoPS names bSSFP C0
    Modality("T2", "T2-weighted MRI", "mri", ("T2 MRI", "T2-weighted MR image")),
)}

# Sentence frames of a training prompt besides the canonical "{name} in {modality}" (drawn with
# ``data.prompt_wording_probability``): the structure's name and the modality are what a prompt
# means, not where they stand in it.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "{name} in {modality}",
    "{modality}: {name}",
    "{name} on {modality}",
    "{name}, {modality}",
    "segment the {name} in this {modality} image",
)

# How a modality is phrased inside a prompt ("left atrium in LGE MRI").
MODALITY_PHRASES: dict[str, str] = {key: m.phrase for key, m in MODALITIES.items()}


def modality(key: str) -> Modality:
    """The vocabulary's modality ``key``; ``ValueError`` naming the known ones (and the likely
    intended one when only the case differs) otherwise."""
    if key in MODALITIES:
        return MODALITIES[key]
    close = [known for known in MODALITIES if known.lower() == str(key).lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown modality {key!r}{hint}; known modalities: {sorted(MODALITIES)}")


def task(key: str) -> Task:
    if key not in TASKS:
        raise ValueError(f"unknown task {key!r}; known tasks: {sorted(TASKS)}")
    return TASKS[key]


def layout(key: str) -> LayoutCodes:
    if key not in LAYOUTS:
        raise ValueError(f"unknown label layout {key!r}; known layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[key]


def prompt(structure: str, modality: str, rng: random.Random | None = None,
           wording_rng: random.Random | None = None) -> str:
    """Prompt text for a structure in a modality: "{canonical name} in {modality phrase}"; a
    random synonym of the name when ``rng`` is given, a random sentence frame
    (``PROMPT_TEMPLATES``) and way of writing the modality when ``wording_rng`` is given."""
    names = STRUCTURES[structure].names
    name = names[0] if rng is None else rng.choice(names)
    known = MODALITIES.get(modality)
    phrase = known.phrase if known else modality
    if wording_rng is None:
        return f"{name} in {phrase}"
    phrases = (phrase, *known.wordings) if known else (phrase,)
    return wording_rng.choice(PROMPT_TEMPLATES).format(name=name, modality=wording_rng.choice(phrases))


def binary_masks(label: np.ndarray, layout_key: str, structures: tuple[str, ...] | list[str]) -> np.ndarray:
    """Binary mask per structure ``[P, *S]`` from a label array in a layout's codes."""
    codes = layout(layout_key)
    masks = []
    for key in structures:
        if key == codes.nonzero_structure:
            masks.append(label != 0)
        elif key in codes.structures:
            masks.append(np.isin(label, codes.structures[key]))
        else:
            raise ValueError(f"layout {layout_key!r} does not annotate structure {key!r}")
    return np.stack(masks)


def annotated(layout_key: str, structures: tuple[str, ...] | list[str]) -> list[bool]:
    """Which of ``structures`` a layout annotates (the others are never negatives)."""
    known = layout(layout_key).structures
    return [key in known for key in structures]


def annotated_structures(layout_key: str, task_key: str, trained: bool = False) -> list[str]:
    """The structures of a task that a layout annotates, in the task's order (with ``trained``,
    its ``trained_structures``)."""
    structures = TASKS[task_key].trained_structures if trained else TASKS[task_key].structures
    return [key for key, known in zip(structures, annotated(layout_key, structures)) if known]


def labelled_prompts() -> list[tuple[str, str]]:
    """``(structure key, prompt)``: the reference set whose statistics precondition the prompt
    encoder's text embeddings. Every name of every structure in every way of writing every
    modality, in the canonical frame, and in every sentence frame (``PROMPT_TEMPLATES``) with
    each modality's canonical phrase: the ways a structure's prompts vary in training, whose
    directions the whitening must not amplify."""
    wordings = dict.fromkeys(w for m in MODALITIES.values() for w in (m.phrase, *m.wordings))
    phrases = dict.fromkeys(MODALITY_PHRASES.values())
    pairs = [(s.key, f"{name} in {wording}") for s in STRUCTURES.values() for name in s.names for wording in wordings]
    pairs += [(s.key, template.format(name=name, modality=phrase)) for s in STRUCTURES.values() for name in s.names
              for template in PROMPT_TEMPLATES[1:] for phrase in phrases]
    return pairs
