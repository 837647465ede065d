"""Case records and data sources: the contract between readers and everything downstream."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Case:
    """One image (and its label) of one task, center and modality.

    Readers produce these; nothing downstream parses file names.

    Args:
        case_id: the dataset's own case name (unique within a source).
        task: task key from the vocabulary.
        center: acquisition center (ID/OOD roles are derived per task and center).
        modality: modality key (``LGE``, ``CT``, ``MRI``, ``C0``...).
        layout: label layout key, which fixes the label codes (vocabulary ``LAYOUTS``).
        image: path of the image file.
        label: path of the label file, or ``None`` for unlabelled cases.
        split: ``train``, ``val`` or ``test``.
        weight: relative sampling weight of the case's source.
        subject: the person imaged, the unit of splitting: every image of one subject (ACDC's two
            frames, MyoPS's sequences) lies in one split. ``None``: the case is its own subject.
        phase: cardiac phase of a cine frame (``ED``, ``ES``), where the release says; else ``None``.
        structures: the only structures the case is trained and scored on, where its source
            restricts them (``DataSource.structures``); ``None``: every one its layout annotates.
    """

    case_id: str
    task: str
    center: str
    modality: str
    layout: str
    image: str
    label: str | None
    split: str
    weight: float = 1.0
    subject: str | None = None
    phase: str | None = None
    structures: tuple[str, ...] | None = None

    @property
    def uid(self) -> str:
        """Key that is unique across a manifest."""
        return f"{self.task}/{self.center}/{self.modality}/{self.case_id}"

    def trains(self, structure: str) -> bool:
        """Whether this case is trained and scored on ``structure`` as far as its source says
        (``structures``); whether its layout annotates it is the vocabulary's question."""
        return self.structures is None or structure in self.structures

    @property
    def person(self) -> str:
        """Who was imaged, unique within a center: the subject, else the case itself."""
        return self.subject or self.case_id


@dataclass
class DataSource:
    """One folder of cases in a known layout, as named in an experiment YAML.

    Args:
        layout: reader to use: ``lascarqs``, ``mmwhs``, ``myops``, ``acdc`` or ``manifest``.
        root: folder holding the cases (may use ``${oc.env:...}`` in YAML).
        task: task key (``la``, ``whs``, ``myops``, ``acdc``).
        center: center name used in tables and ID/OOD roles.
        modality: modality key (``LGE``, ``CT``, ``MRI``, ``C0``, ``bSSFP``...).
        split: ``train``, ``val`` or ``test``: every case of the source (or of ``cases``) is
            in it. With a splits file (``data.splits``) each case takes its subject's split from
            the file instead, and ``split`` (one name or a list) keeps only those splits, e.g.
            ``[val, test]`` for a sequence that is scored but never trained on; ``null``: all.
        sequence: file suffix of the image for layouts with several sequences per case
            (MyoPS: ``LGE``, ``C0``, ``T2``); defaults to the modality.
        weight: relative sampling weight of this source's cases in training: their (task, center,
            modality) group's share of its task is multiplied by its cases' mean weight, and
            inside the group cases are drawn in proportion to it
            (``datamodules.sampling.case_weights``). E.g. ``0.5`` on a second sequence of a
            center gives it a third of the center's patches instead of a half.
        cases: keep only these cases (in this order), e.g. to split one folder into train,
            val and test: case ids, or subjects (ACDC ``patient001`` keeps both its frames); an
            id that is not found is an error.
        file: ``manifest`` layout only: the CSV or YAML list of cases, relative to ``root``
            (default ``manifest.csv``, else ``manifest.yaml``).
        label_layout: ``manifest`` layout only: whose label codes the files use (``lascarqs``,
            ``mmwhs``, ``myops``); default: the task's own release (la: lascarqs, whs: mmwhs,
            myops: myops).
        structures: train and score only these of the task's structures on this source; the
            others are masked as if unlabelled, never negatives (MyoPS C0 without scar: scar is
            an LGE target, invisible in cine). ``null``: every structure the layout annotates.
    """

    layout: str
    root: str
    task: str
    center: str
    modality: str
    split: str | list[str] | None = None
    sequence: str | None = None
    weight: float = 1.0
    cases: list[str] | None = None
    file: str | None = None
    label_layout: str | None = None
    structures: list[str] | None = None
