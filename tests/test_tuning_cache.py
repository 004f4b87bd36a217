"""The tuner (fastalex/kernels/_common.py tuned_config) and its disk cache, with a stand-in timer: it
picks the fastest candidate, skips those the GPU cannot run, times once per machine, and ignores a
cache that is corrupt or from another GPU or version."""
from __future__ import annotations

import dataclasses
import json

import pytest
import triton.testing

from fastalex.kernels import _common, _tuning_cache
from backends_here import fresh_tuner


@dataclasses.dataclass(frozen=True)
class Cfg:
    block: int
    warps: int


CANDIDATES = [Cfg(64, 4), Cfg(128, 4), Cfg(128, 8)]
TIMES = {Cfg(64, 4): 2.0, Cfg(128, 4): 0.5, Cfg(128, 8): 1.0}


class OutOfResources(Exception):
    pass


@pytest.fixture
def timer(monkeypatch, tmp_path):
    """do_bench times a config by TIMES (raising OutOfResources for those missing); returns the log of
    timed configs. A fresh process: no choice in memory, the cache folder empty."""
    timed = []

    def do_bench(fn, **kwargs):
        fn()
        cfg = timed[-1]
        if cfg not in TIMES:
            raise OutOfResources("out of resource: shared memory")
        return TIMES[cfg]

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    fresh_tuner(monkeypatch, tmp_path)
    return timed


def _new_process(monkeypatch):
    monkeypatch.setattr(_common, "_TUNED", {})
    monkeypatch.setattr(_tuning_cache, "_cache", None)


def test_picks_the_fastest_and_skips_what_cannot_run(timer):
    candidates = [Cfg(256, 16)] + CANDIDATES  # the first one does not fit this "GPU"
    assert _common.tuned_config(("k", 1), candidates, timer.append) == Cfg(128, 4)
    assert timer == candidates
    assert _common.tuned_config(("k", 1), candidates, timer.append) == Cfg(128, 4)
    assert len(timer) == len(candidates), "a second call in the process timed again"
    assert _common.tuned_config(("k", 2), candidates, timer.append) == Cfg(128, 4)
    assert len(timer) == 2 * len(candidates), "another key must be timed"


def test_nothing_runs_raises(timer):
    with pytest.raises(RuntimeError, match="no kernel configuration could run"):
        _common.tuned_config(("k", 3), [Cfg(1, 1), Cfg(2, 2)], timer.append)


def test_a_second_process_reads_the_choice_from_disk(timer, monkeypatch, tmp_path):
    assert _common.tuned_config(("conv", (128, 96)), CANDIDATES, timer.append) == Cfg(128, 4)
    files = list(tmp_path.glob("tuning-*.json"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    _new_process(monkeypatch)
    timer.clear()
    assert _common.tuned_config(("conv", (128, 96)), CANDIDATES, timer.append) == Cfg(128, 4)
    assert timer == [], "the cached choice was timed again"
    # a choice that is no longer a candidate is timed afresh
    _new_process(monkeypatch)
    others = [Cfg(64, 4), Cfg(128, 8)]
    assert _common.tuned_config(("conv", (128, 96)), others, timer.append) == Cfg(128, 8)
    assert timer == others


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "fastalex-tuning-1", "entries": {},
                                                               "versions": {"gpu": "another GPU"}})],
                         ids=["corrupt", "foreign"])
def test_a_corrupt_or_foreign_cache_is_ignored_with_one_warning(timer, monkeypatch, tmp_path, content):
    path = tmp_path / _tuning_cache._file_name(_tuning_cache.versions())
    path.write_text(content)
    with pytest.warns(RuntimeWarning, match="ignoring the tuning cache .*corrupt or written for another GPU"):
        assert _common.tuned_config(("k", 4), CANDIDATES, timer.append) == Cfg(128, 4)
    assert json.loads(path.read_text())["entries"], "the cache was not rewritten"


def test_untuned_runs_take_the_first_candidate_and_write_nothing(timer, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTALEX_TUNE", "0")
    assert _common.tuned_config(("k", 5), CANDIDATES, timer.append) == CANDIDATES[0]
    assert timer == [] and not list(tmp_path.iterdir())


def test_the_cache_can_be_turned_off(timer, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTALEX_TUNING_CACHE", "0")
    assert _common.tuned_config(("k", 6), CANDIDATES, timer.append) == Cfg(128, 4)
    assert not list(tmp_path.iterdir())
