"""The epoch cursor on its own: where the next iteration starts, what a state says, what workers count."""

from __future__ import annotations

import pickle

import pytest

from annshard._load._cursor import MAX_WORKERS, EpochCursor


def test_a_fresh_cursor_starts_at_epoch_zero_and_each_start_moves_on():
    c = EpochCursor(seed=3)
    assert c.start() == (0, 0)
    assert (c.epoch, c.position, c.active) == (0, 0, True)
    assert c.start() == (1, 0)  # a second iter() without finishing the first reads the next epoch
    assert c.start() == (2, 0)


def test_finishing_an_epoch_points_at_the_next_one():
    c = EpochCursor(seed=0)
    c.start()
    c.advance(40)
    c.advance(2)
    assert c.state_dict() == {"seed": 0, "epoch": 0, "rows_consumed": 42}
    c.finish(0)
    assert (c.epoch, c.position, c.active) == (1, 0, False)
    assert c.state_dict() == {"seed": 0, "epoch": 1, "rows_consumed": 0}
    assert c.start() == (1, 0)


def test_finishing_an_old_epoch_after_set_epoch_changes_nothing():
    c = EpochCursor(seed=0)
    c.start()
    c.set_epoch(7)  # during the iteration of epoch 0
    c.finish(0)
    assert (c.epoch, c.position, c.active) == (7, 0, False)
    assert c.start() == (7, 0)


def test_peek_changes_nothing():
    c = EpochCursor(seed=0)
    c.set_epoch(4)
    assert c.start(peek=True) == (4, 0)
    assert c.start(peek=True) == (4, 0)
    assert (c.epoch, c.active) == (4, False)
    assert c.start(worker=0, peek=True) == (4, 0)
    assert c.worker_epochs[0] == 4


def test_a_loaded_state_is_where_the_next_iteration_starts_once():
    c = EpochCursor(seed=5)
    c.start()
    c.load_state_dict({"seed": 5, "epoch": 3, "rows_consumed": 17})
    assert c.state_dict() == {"seed": 5, "epoch": 3, "rows_consumed": 17}  # before the next iteration too
    assert c.start() == (3, 17)
    assert (c.epoch, c.position, c.pending) == (3, 17, None)
    c.advance(10)
    assert c.state_dict() == {"seed": 5, "epoch": 3, "rows_consumed": 27}
    c.finish(3)
    assert c.start() == (4, 0)


def test_a_state_of_another_seed_is_refused():
    c = EpochCursor(seed=1)
    with pytest.raises(ValueError, match="seed=2 but this loader has seed=1; create the Loader with seed=2"):
        c.load_state_dict({"seed": 2, "epoch": 0, "rows_consumed": 0})
    assert c.pending is None


def test_each_worker_slot_counts_its_own_epochs():
    c = EpochCursor(seed=0)
    assert [c.start(worker=0) for _ in range(3)] == [(0, 0), (1, 0), (2, 0)]
    assert c.start(worker=1) == (0, 0)
    assert (c.epoch, c.active) == (0, False)  # the main process's epoch is not the workers'
    c.set_epoch(9)
    assert c.start(worker=0) == (9, 0)
    assert c.start(worker=MAX_WORKERS - 1) == (9, 0)


def test_workers_resume_at_an_epoch_boundary_and_refuse_mid_epoch():
    c = EpochCursor(seed=0)
    c.load_state_dict({"seed": 0, "epoch": 6, "rows_consumed": 0})
    assert c.start(worker=2) == (6, 0)
    assert c.start(worker=2) == (7, 0)
    c.load_state_dict({"seed": 0, "epoch": 6, "rows_consumed": 100})
    with pytest.raises(ValueError, match="resume at an epoch boundary"):
        c.start(worker=0)
    assert c.start() == (6, 100)  # iterated directly, the same state resumes exactly


def test_workers_past_the_slots_count_like_the_main_process():
    c = EpochCursor(seed=0)
    assert c.start(worker=MAX_WORKERS) == (0, 0)
    assert c.start(worker=MAX_WORKERS + 5) == (1, 0)
    assert c.epoch == 1


def test_a_pickled_cursor_keeps_its_place_but_not_the_worker_counters():
    c = EpochCursor(seed=8)
    c.start()
    c.advance(12)
    c.start(worker=0)
    copy = pickle.loads(pickle.dumps(c))  # not while spawning a process: the shared array stays behind
    assert copy.worker_epochs is None
    assert copy.state_dict() == {"seed": 8, "epoch": 0, "rows_consumed": 12}
    assert copy.start(worker=0) == (1, 0)  # without counters a worker counts like the main process
    assert c.worker_epochs[0] == 1  # the original's counters are untouched
    copy.set_epoch(2)
    assert copy.start() == (2, 0)
