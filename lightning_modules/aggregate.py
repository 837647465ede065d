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


def center_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task x center x structure: mean metrics and case count."""
    table = frame.groupby(["task", "center", "role", "structure"], as_index=False)[list(METRICS)].mean()
    counts = frame.groupby(["task", "center", "role", "structure"]).size().rename("cases").reset_index()
    return table.merge(counts, on=["task", "center", "role", "structure"])


def task_center_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task x center: mean over cases of the per-case structure mean."""
    return case_means(frame).groupby(["task", "center", "role"], as_index=False)[list(METRICS)].mean()


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """The CARE tables: per task x split (ID/OOD), mean over cases of the per-case structure
    mean, for Dice, HD and HD95, with the number of cases."""
    cases = case_means(frame).rename(columns={"role": "split"})
    table = cases.groupby(["task", "split"], as_index=False)[list(METRICS)].mean()
    counts = cases.groupby(["task", "split"]).size().rename("cases").reset_index()
    return table.merge(counts, on=["task", "split"])
