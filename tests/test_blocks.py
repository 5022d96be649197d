"""Block sizes from a timed trial (jaxnets.blocks): the choices file, the choice, and the engine training in
the chosen blocks with the numbers of those blocks, remembered for the next call."""

import json
import os
import stat
import time

import numpy as np
import pytest

from jaxnets import blocks, compilation_cache, data, engine
from jaxnets import events as jaxnets_events
from jaxnets.result import METRICS

DIGITS = data.load("digits")
BASE = {"hidden": (32, 32), "steps": 40, "eval_every": 20, "batch_size": 32}
ROWS = [{**BASE, "activation": a, "init": i, "seed": s}
        for a in ("relu", "tanh") for i in ("he_normal", "glorot_uniform") for s in range(2)]
KEY = {"machine": {"cpu": "x"}, "spec": "mlp", "rule": 8}


def test_choices_file_round_trip(tmp_path):
    file = blocks.enable(tmp_path / "cache")
    assert file == tmp_path / "cache" / blocks.FILE_NAME and blocks.path() == file
    assert stat.S_IMODE(os.stat(tmp_path / "cache").st_mode) == 0o700
    assert blocks.lookup(KEY) is None
    blocks.record(KEY, 1, {8: 0.5, 1: 0.25})
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    blocks.forget()  # read back from the file, not this process's memory
    assert blocks.lookup(KEY) == 1
    assert blocks.lookup({**KEY, "rule": 16}) is None
    entry = json.loads(file.read_text())["choices"].popitem()[1]
    assert entry["size"] == 1 and entry["group_s"] == {"8": 0.5, "1": 0.25} and entry["key"] == KEY
    blocks.record({**KEY, "rule": 16}, 16, {16: 1.0, 1: 2.0})  # a second choice joins the first
    blocks.forget()
    assert blocks.lookup(KEY) == 1 and blocks.lookup({**KEY, "rule": 16}) == 16
    blocks.disable()
    blocks.forget()
    assert blocks.path() is None and blocks.lookup(KEY) is None


def test_without_a_file_choices_stay_in_memory(tmp_path):
    blocks.record(KEY, 4, {8: 1.0, 4: 0.5})
    assert blocks.lookup(KEY) == 4
    blocks.forget()
    assert blocks.lookup(KEY) is None


@pytest.mark.parametrize("text", ["{not json", '{"format": 99, "choices": {}}', "[1, 2]",
                                  '{"format": 1, "choices": {"k": {"size": "big"}}}'])
def test_a_bad_choices_file_is_no_choice_and_is_replaced(tmp_path, text):
    file = blocks.enable(tmp_path)
    file.write_text(text)
    assert blocks.lookup(KEY) is None
    blocks.record(KEY, 2, {8: 1.0, 2: 0.1})
    blocks.forget()
    assert blocks.lookup(KEY) == 2


def test_enable_refuses_a_directory_others_may_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(compilation_cache.UnsafeCacheDirError, match="writable by group or others"):
        blocks.enable(shared)
    assert blocks.path() is None


def test_the_compilation_cache_keeps_the_choices_too(tmp_path):
    target = compilation_cache.enable(tmp_path / "jax")
    try:
        assert blocks.path() == target / blocks.FILE_NAME
    finally:
        compilation_cache.disable()
    assert blocks.path() is None


class _Clock:
    """A fake ``time.perf_counter`` that advances only when a candidate runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def runner(self, durations):
        it = iter(durations)

        def run():
            self.now += next(it)

        return run


@pytest.mark.parametrize(("small_pass", "expected"), [(7.0, 1), (7.7, 8), (9.0, 8)])
def test_choose_compares_estimated_group_times_with_a_margin(monkeypatch, small_pass, expected):
    """The rule's block (8 of 64 variants: 8 blocks) takes 8.0 a call; the small candidate covers the same
    8 variants one at a time. It wins only below (1 - MARGIN) of the rule's group time (8 * 8.0 = 64)."""
    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    rounds = blocks.TRIAL_ROUNDS
    big = clock.runner([100.0] + [9.0, 8.0] + [8.5] * (rounds - 2))  # warm-up, then the fastest is 8.0
    small = clock.runner([100.0] + [small_pass] + [small_pass + 3] * (rounds - 1))
    pick, group_s = blocks.choose([blocks.Candidate(8, 8, big), blocks.Candidate(1, 64 / 8, small)])
    assert pick == expected
    assert group_s == {8: 64.0, 1: pytest.approx(8 * small_pass)}


def _trial_events(rows, options, monkeypatch, pick=None):
    """Train ``rows`` with the trial on every group size (``TRIAL_MIN_STEP_BYTES`` 0); ``pick`` forces the
    choice after the real timing. Returns the result and the TimingBlocks events."""
    monkeypatch.setattr(engine, "TRIAL_MIN_STEP_BYTES", 0)
    monkeypatch.setattr(engine, "UNTRIED_KINDS", frozenset())  # the MLP compiles fastest
    if pick is not None:
        real = blocks.choose
        monkeypatch.setattr(blocks, "choose", lambda candidates, **kw: (pick, real(candidates, **kw)[1]))
    seen = []
    result = engine.train(rows, DIGITS, options=options, progress=seen.append)
    return result, [e for e in seen if isinstance(e, jaxnets_events.TimingBlocks)]


def test_the_engine_trains_in_the_chosen_blocks_and_remembers_them(tmp_path, monkeypatch):
    """8 variants: the rule's one block of 8 against one at a time; forced to one at a time, the group trains
    in 8 blocks with the numbers of ``max_variants_per_program=1``, and the next call (and the next process,
    through the file) reuses the choice without a trial."""
    blocks.enable(tmp_path)
    engine.clear_cache()
    tried, timing = _trial_events(ROWS, None, monkeypatch, pick=1)
    assert [e.sizes for e in timing] == [(8, 1)] and timing[0].n_variants == 8
    g = tried.groups[0]
    assert g.n_blocks == 8 and g.trial_s > 0 and g.trial_s < g.wall_s
    alone = engine.train(ROWS, DIGITS, options=engine.Options(max_variants_per_program=1))
    for k in METRICS:
        np.testing.assert_array_equal(tried.history[k], alone.history[k], err_msg=k)
    monkeypatch.undo()
    blocks.forget()  # as a new process: the choice comes from the file
    again, timing = _trial_events(ROWS, None, monkeypatch)
    assert timing == [] and again.groups[0].n_blocks == 8 and again.groups[0].trial_s == 0.0
    for k in METRICS:
        np.testing.assert_array_equal(again.history[k], tried.history[k], err_msg=k)


def test_the_trial_runs_only_where_it_can_matter(tmp_path, monkeypatch):
    # no choices file: the shape rule, the same in every process
    result, timing = _trial_events(ROWS, None, monkeypatch)
    assert timing == [] and result.groups[0].n_blocks == 1
    blocks.enable(tmp_path)
    # a fixed block size, or the rule already at one variant per device: nothing to try
    _, timing = _trial_events(ROWS, engine.Options(max_variants_per_program=4), monkeypatch)
    assert timing == []
    _, timing = _trial_events(ROWS[:1], None, monkeypatch)
    assert timing == []
    _, timing = _trial_events(ROWS, engine.Options(block_trial=False), monkeypatch)
    assert timing == []
    # a variant whose step is small (here: under the real threshold), or a built-in MLP, keeps the rule's
    # blocks, untried
    monkeypatch.undo()
    blocks.enable(tmp_path)
    monkeypatch.setattr(engine, "UNTRIED_KINDS", frozenset())
    seen = []
    engine.train(ROWS, DIGITS, progress=seen.append)
    assert not any(isinstance(e, jaxnets_events.TimingBlocks) for e in seen)
    monkeypatch.undo()
    monkeypatch.setattr(engine, "TRIAL_MIN_STEP_BYTES", 0)
    engine.train(ROWS, DIGITS, progress=seen.append)
    assert not any(isinstance(e, jaxnets_events.TimingBlocks) for e in seen)
    # the real trial picks one of the two candidates, and the group trains in that many blocks
    result, timing = _trial_events(ROWS, engine.Options(block_trial=True), monkeypatch)
    assert len(timing) == 1 and result.groups[0].n_blocks in (1, 8)
