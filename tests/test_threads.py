"""polynet.threads: one place decides the thread count; explicit counts win; counts restored."""

from __future__ import annotations

import pytest
import torch

import polynet
from polynet import threads
from polynet.threads import SMALL_WORK, choose_threads, limit_threads


@pytest.fixture(autouse=True)
def _restore():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_is_used_and_restored():
    torch.set_num_threads(2)
    with limit_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), limit_threads(1):
        raise RuntimeError("restored after an error too")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be an integer >= 1 or None"):
        choose_threads(bad)


def test_small_work_runs_on_one_thread_and_busy_cores_are_left_alone(monkeypatch):
    assert choose_threads(work=SMALL_WORK - 1) == 1
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert choose_threads(work=SMALL_WORK * 10) == 2
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)  # one core taken by another process
    assert choose_threads(work=SMALL_WORK * 10) == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    torch.set_num_threads(1)  # never more than the caller's own torch setting
    assert choose_threads() == 1


def test_busy_cores_reads_the_run_queue():
    assert threads.busy_cores() >= 0 and threads.available_cores() >= 1


def test_an_explicit_outer_count_wins_over_inner_automatic_choices(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    torch.set_num_threads(2)
    seen = []
    real = polynet.expand.__wrapped__

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    wrapped = threads.thread_policy(spy)
    net = polynet.SLNN(2, [3], [2]).eval()
    with limit_threads(2):
        wrapped(net)
        with limit_threads(None, work=1) as n:  # fit's small-work rule inside --threads 2
            assert n == 2
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    wrapped(net)  # alone: the policy sees the busy core
    assert seen == [2, 1]


def test_training_records_and_restores_threads():
    from polynet import data, training

    torch.set_num_threads(2)
    torch.manual_seed(0)
    result = training.fit(polynet.SLNN(2, [4], 2), data.xor(60, random_state=0), epochs=1,
                          progress=False)  # fmt: skip
    assert result.options["threads"] is None and torch.get_num_threads() == 2
