"""How many compute threads each verification of a worker pool gets."""

from __future__ import annotations

import os

import pytest

from registry.settings import Settings
from worker.pool import Pool, default_threads

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("concurrency", [1, 2, 3, CORES, CORES + 5])
def test_unset_threads_share_the_cores_among_the_pool(concurrency, tmp_path):
    pool = Pool(Settings(data_dir=tmp_path), concurrency)
    assert pool.settings.verify_threads == default_threads(concurrency) \
        == max(1, CORES // concurrency)
    if concurrency <= CORES:
        assert pool.settings.verify_threads * concurrency <= CORES


def test_an_explicit_thread_count_is_kept(tmp_path):
    settings = Settings(data_dir=tmp_path, verify_threads=7)
    assert Pool(settings, 4).settings.verify_threads == 7
    assert settings.verify_threads == 7


def test_the_callers_settings_are_not_changed(tmp_path):
    settings = Settings(data_dir=tmp_path)
    Pool(settings, 2)
    assert settings.verify_threads is None
