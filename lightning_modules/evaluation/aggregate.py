"""Every aggregate comes from the per-(case, structure) rows, nothing else."""

from __future__ import annotations

import pandas as pd

METRICS = ("dice", "hd", "hd95")
CASE_KEYS = ["uid", "case_id", "task", "center", "modality", "role"]


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a table, one per (case, structure); duplicates (DDP padding) dropped."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.drop_duplicates(subset=["uid", "structure"]).sort_values(["task", "center", "uid", "structure"],
                                                                           ignore_index=True)


def case_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case: the mean of each metric over its task's structures (CARE's per-case score)."""
    return frame.groupby(CASE_KEYS, as_index=False)[list(METRICS)].mean()


CENTER_KEYS = ["task", "center", "modality", "role"]


def center_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task x center x modality x cardiac phase (where the cases have one: ACDC's ED and ES)
    x structure: mean metrics, the spread and worst Dice, the mean signed and absolute volume
    error (ml), and the case count."""
    keys = [*CENTER_KEYS, "phase", "structure"]
    error = frame.pred_ml - frame.ref_ml if "pred_ml" in frame else float("nan")  # rows from older runs lack volumes
    frame = frame.assign(phase=frame.get("phase"), volume_error_ml=error, abs_volume_error_ml=abs(error))
    groups = frame.groupby(keys, dropna=False)  # cases without a phase form their own group
    table = groups[[*METRICS, "volume_error_ml", "abs_volume_error_ml"]].mean()
    table["dice_sd"], table["dice_min"], table["cases"] = groups.dice.std(), groups.dice.min(), groups.size()
    return table.reset_index()


def task_center_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task x center x modality: mean over cases of the per-case structure mean. ``name``
    is the center, or ``center/modality`` where a center is scored in several modalities (a
    seen center's unseen sequence is OOD while its trained one is ID)."""
    table = case_means(frame).groupby(CENTER_KEYS, as_index=False)[list(METRICS)].mean()
    several = table.groupby(["task", "center"]).modality.transform("nunique") > 1
    table["name"] = table.center.where(~several, table.center + "/" + table.modality)
    return table


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """The CARE tables: per task x split (ID/OOD), mean over cases of the per-case structure
    mean, for Dice, HD and HD95, with the number of cases."""
    cases = case_means(frame).rename(columns={"role": "split"})
    table = cases.groupby(["task", "split"], as_index=False)[list(METRICS)].mean()
    counts = cases.groupby(["task", "split"]).size().rename("cases").reset_index()
    return table.merge(counts, on=["task", "split"])
