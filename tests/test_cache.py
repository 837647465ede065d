"""The preprocessing cache: reused when nothing changed, rebuilt when stale or corrupt."""

import os

import numpy as np
import torch

from datamodules.cache import PreprocessingCache, preprocessing_settings
from datamodules.manifest import Manifest
from datamodules.preprocessing import Preprocessing
from tests.conftest import phantom_sources


def counting(preprocessing):
    calls = []

    def build(case, role):
        calls.append(case.uid)
        return preprocessing(case, role)

    return build, calls


def one_case(phantom_root):
    manifest = Manifest.from_sources(phantom_sources(phantom_root, splits=("test",)))
    return next(c for c in manifest.cases if c.task == "myops")


def test_second_run_reads_the_cache_and_gives_the_same_arrays(phantom_root, tmp_path):
    case, prep = one_case(phantom_root), Preprocessing()
    build, calls = counting(prep)
    first = PreprocessingCache(tmp_path, preprocessing_settings(prep)).load_or_build(case, "OOD", build)
    cache = PreprocessingCache(tmp_path, preprocessing_settings(prep))
    second = cache.load_or_build(case, "OOD", build)
    assert calls == [case.uid] and cache.hits == 1
    assert torch.equal(first.image, second.image) and torch.equal(first.label, second.label)
    assert np.array_equal(first.affine, second.affine) and first.slice_axis == second.slice_axis
    assert first.original_shape == second.original_shape and second.role == "OOD"


def test_other_settings_or_a_touched_file_miss_the_cache(phantom_root, tmp_path):
    case, prep = one_case(phantom_root), Preprocessing()
    build, calls = counting(prep)
    PreprocessingCache(tmp_path, preprocessing_settings(prep)).load_or_build(case, "ID", build)
    other = Preprocessing(target_spacing={"la": 1.0, "whs": 1.5, "myops": 2.0})
    PreprocessingCache(tmp_path, preprocessing_settings(other)).load_or_build(case, "ID", counting(other)[0])
    stat = os.stat(case.image)
    os.utime(case.image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was rewritten
    PreprocessingCache(tmp_path, preprocessing_settings(prep)).load_or_build(case, "ID", build)
    assert calls == [case.uid, case.uid]


def test_corrupt_entry_is_detected_and_rebuilt(phantom_root, tmp_path, caplog):
    case, prep = one_case(phantom_root), Preprocessing()
    build, calls = counting(prep)
    cache = PreprocessingCache(tmp_path, preprocessing_settings(prep))
    good = cache.load_or_build(case, "ID", build)
    path = cache.path(case)
    path.write_bytes(path.read_bytes()[:-100])  # truncated write
    again = PreprocessingCache(tmp_path, preprocessing_settings(prep)).load_or_build(case, "ID", build)
    assert len(calls) == 2 and "unusable" in caplog.text
    assert torch.equal(good.image, again.image)
    # a readable entry with altered arrays fails its checksum
    entry = torch.load(path, weights_only=True)
    entry["arrays"]["image"] += 1
    torch.save(entry, path)
    caplog.clear()
    PreprocessingCache(tmp_path, preprocessing_settings(prep)).load_or_build(case, "ID", build)
    assert len(calls) == 3 and "checksum" in caplog.text


def test_check_cache_remembers_passing_files_until_they_change(tmp_path):
    from datamodules.cache import CheckCache
    from tests.test_checks import myops_case

    case = myops_case(tmp_path)
    calls = []

    def check(c):
        calls.append(c.uid)
        return {"problems": [], "spacing": None, "shape": None, "codes": [], "volumes_ml": {}}

    cache = CheckCache(tmp_path / "checks")
    cache.load_or_check(case, check)
    cache.load_or_check(case, check)
    assert len(calls) == 1
    stat = os.stat(case.label)
    os.utime(case.label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.load_or_check(case, check)
    assert len(calls) == 2
    failing = lambda c: {**check(c), "problems": ["bad"]}  # noqa: E731
    other = myops_case(tmp_path, "c2")
    cache.load_or_check(other, failing)
    cache.load_or_check(other, failing)
    assert len(calls) == 4  # a failing report is never cached
