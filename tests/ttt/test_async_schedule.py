"""The asynchronous schedule (`TTTConfig.schedule` "async"): predictions read the weights the step executor last
published, steps that fall behind are skipped and counted, controls quiesce the executor first, a failing step
never fails a frame. Every wait is on an Event or the executor's condition; nothing sleeps."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.stats import StepStats, Theta0View
from mask2former_ttt.ttt.step_executor import StepExecutor

SMALL = {"batch_size": 2, "micro_batch": 2, "guard": None}  # unguarded: the latest weights predict once stepped
WAIT = 120.0  # a bound on waits for the executor, so that a broken executor fails a test instead of hanging it


@pytest.fixture
def executor(tiny_model):
    ex = StepExecutor(tiny_model)
    yield ex
    ex.stop()


def async_adapter(model, executor: StepExecutor, **overrides: Any):
    a = build_adapter(model, "online", "full", seed=3, schedule="async", **{**SMALL, **overrides})
    a.use_step_executor(executor)
    return a


class Gate:
    """Wraps an adapter's `adapt` (run on the executor thread): each step announces itself (`started`, the frame
    index it steps on and the window's newest frame then) and waits for `release` before running."""

    def __init__(self, adapter, step: Callable | None = None) -> None:
        self.real = step or adapter.adapt
        self.adapter = adapter
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[int, torch.Tensor]] = []
        adapter.adapt = self

    def __call__(self, stats: StepStats, view: Theta0View | None = None) -> None:
        self.calls.append((stats.frame_index, self.adapter.window[-1]))
        self.started.set()
        assert self.release.wait(WAIT)
        self.real(stats, view)


def wait_drained(executor: StepExecutor, adapter) -> None:
    """Until a control on another thread has taken the stream's queued work (it notifies the condition)."""
    steps = adapter._async.steps
    with executor.lock:
        assert executor.lock.wait_for(lambda: steps.due is None and not steps.inbox, WAIT)


def working(model, frames):
    return [to_working_resolution(f, model.cfg.image_size, model.cfg.max_size) for f in frames]


# ---- the published set is swapped whole --------------------------------------------------------------------
def test_a_prediction_never_sees_a_half_written_set_of_weights(tiny_model, frames, executor) -> None:
    """The executor writes each step's number into every weight, half at a time, and the test holds one step half
    way; every prediction's weights must come from one step only."""
    a = async_adapter(tiny_model, executor)
    midway, release = threading.Event(), threading.Event()
    hold = {"step": 2}

    def numbered_step(stats: StepStats, view: Theta0View | None = None) -> None:
        a.ensure_params()
        k = float(stats.frame_index + 1)
        half = a.flat.data.numel() // 2
        a.flat.data[:half] = k
        if k == hold["step"]:
            midway.set()
            assert release.wait(WAIT)
        a.flat.data[half:] = k
        a.stepped = True

    a.adapt = numbered_step
    seen: list[set[float]] = []
    predict_forward = a._forward

    def checking_forward(tensors, x, mode):
        if tensors:
            seen.append(set(torch.cat([t.reshape(-1) for t in tensors.values()]).unique().tolist()))
        return predict_forward(tensors, x, mode)

    a._forward = checking_forward
    a.step(frames[0])
    assert a._async.steps.flush(WAIT)  # step 1 published
    a.step(frames[1])  # step 2 starts and stops half way
    assert midway.wait(WAIT)
    for f in frames[2:6]:  # predictions while the executor's weights are half step 2, half step 1
        a.step(f)
    assert seen and all(values == {1.0} for values in seen), seen
    release.set()
    hold["step"] = -1
    for i in range(40):  # a predictor hammering while the executor keeps stepping
        a.step(frames[i % len(frames)])
    assert a._async.steps.flush(WAIT)
    a.step(frames[0])
    assert all(len(values) == 1 for values in seen), [v for v in seen if len(v) != 1]
    order = [next(iter(v)) for v in seen]
    assert order == sorted(order) and order[-1] > 2.0  # later sets, in publishing order


# ---- skipped steps ----------------------------------------------------------------------------------------
def test_steps_that_fall_behind_are_skipped_never_the_frames_and_counted(tiny_model, frames, executor) -> None:
    a = async_adapter(tiny_model, executor)
    gate = Gate(a)
    results = [a.step(frames[0])]  # its step starts and waits
    assert gate.started.wait(WAIT)
    results += [a.step(f) for f in frames[1:4]]  # 1 queues a step, 2 supersedes it, 3 supersedes 2's
    assert [r.stats.steps_skipped for r in results] == [0, 0, 1, 1]
    assert a._async.steps.counts() == (2, 0)
    gate.release.set()
    assert a._async.steps.flush(WAIT)
    assert [i for i, _ in gate.calls] == [0, 3]  # one step on frame 0, the next on the newest frame
    assert torch.equal(gate.calls[1][1], working(tiny_model, frames[3:4])[0])
    later = a.step(frames[4])
    assert later.stats.steps_skipped == 0 and later.stats.steps_taken == 2  # the steps on frames 0 and 3
    assert a._async.published.version >= 2
    state = a.state_dict()
    assert [torch.equal(w, x) for w, x in zip(state["window"], working(tiny_model, frames[:5]))] == [True] * 5


# ---- controls while a step is in flight ------------------------------------------------------------------
def sync_twin(model, frames, stepped: int, seen: int):
    """The synchronous stream of the same config and seed that stepped on frames[:stepped] and then only saw the
    frames up to `seen` (no step)."""
    ref = build_adapter(model, "online", "full", seed=3, schedule="sync", **SMALL)
    for f in frames[:stepped]:
        ref.step(f)
    ref.window.extend(working(model, frames[stepped:seen]))
    ref.frame_index = seen
    return ref


def same_state(got: dict, want: dict) -> None:
    assert set(got["params"]) == set(want["params"])
    assert all(torch.equal(got["params"][n], want["params"][n]) for n in want["params"])
    assert [torch.equal(x, y) for x, y in zip(got["window"], want["window"])] == [True] * len(want["window"])
    assert len(got["window"]) == len(want["window"])
    assert torch.equal(got["generator"], want["generator"])
    assert got["frame_index"] == want["frame_index"] and got["stepped"] == want["stepped"]
    got_opt, want_opt = got["optimizer"], want["optimizer"]
    assert (got_opt is None) == (want_opt is None)
    if want_opt is not None:
        for k, s in want_opt["state"].items():
            assert all(torch.equal(got_opt["state"][k][b], v) for b, v in s.items() if torch.is_tensor(v))


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


def test_a_checkpoint_waits_for_the_step_in_flight_drops_the_queued_one_and_equals_the_synchronous_state(
    tiny_model, frames, executor
) -> None:
    a = async_adapter(tiny_model, executor)
    gate = Gate(a)
    a.step(frames[0])
    assert gate.started.wait(WAIT)
    a.step(frames[1])
    a.step(frames[2])  # a queued step (frame 2's, frame 1's skipped)
    saver, out = in_thread(a.state_dict)
    wait_drained(executor, a)  # the checkpoint took the queued step off the executor
    gate.release.set()  # only now can the step in flight finish
    saver.join(WAIT)
    assert out, "state_dict did not return"
    assert [i for i, _ in gate.calls] == [0]  # the queued step was dropped, not taken
    same_state(out[0], sync_twin(tiny_model, frames, stepped=1, seen=3).state_dict())
    assert a._async.steps.counts() == (2, 0)  # frame 1's superseded, frame 2's dropped
    assert a._async.published.version == 1 and not a.predicts_with_theta0  # frame 0's step is what predicts


def test_a_reset_during_a_step_leaves_theta0_published_and_the_step_cannot_overwrite_it(
    tiny_model, frames, executor
) -> None:
    a = async_adapter(tiny_model, executor)
    a.step(frames[0])
    assert a._async.steps.flush(WAIT)
    gate = Gate(a)
    a.step(frames[1])
    assert gate.started.wait(WAIT)
    resetter, _ = in_thread(a.reset)
    wait_drained(executor, a)
    gate.release.set()
    resetter.join(WAIT)
    assert not resetter.is_alive()
    assert a.predicts_with_theta0 and dict(a.prediction_tensors()) == {}
    fresh = build_adapter(tiny_model, "online", "full", seed=3, schedule="sync", **SMALL)
    same_state(a.state_dict(), fresh.state_dict())
    r = a.step(frames[2])  # the stream goes on from θ0
    want = fresh.step(frames[2])
    assert torch.equal(r.class_logits, build_adapter(tiny_model, "main_only").step(frames[2]).class_logits)
    assert a._async.steps.flush(WAIT)
    same_state(a.state_dict(), fresh.state_dict())
    assert want.stats.steps_taken == 1


def test_a_restore_during_a_step_is_what_the_stream_holds_and_predicts_with_afterwards(
    tiny_model, frames, executor
) -> None:
    saved = sync_twin(tiny_model, frames, stepped=2, seen=2).state_dict()
    a = async_adapter(tiny_model, executor)
    gate = Gate(a)
    a.step(frames[5])
    assert gate.started.wait(WAIT)
    a.step(frames[6])
    loader, _ = in_thread(lambda: a.load_state_dict(saved))
    wait_drained(executor, a)
    gate.release.set()
    loader.join(WAIT)
    assert not loader.is_alive()
    same_state(a.state_dict(), saved)
    published = a.prediction_tensors()
    assert all(torch.equal(published[n], saved["params"][n]) for n in saved["params"])


def test_closing_a_stream_with_a_step_in_flight_returns_and_stopping_the_executor_joins(tiny_model, frames) -> None:
    executor = StepExecutor(tiny_model)
    a = async_adapter(tiny_model, executor)
    gate = Gate(a)
    a.step(frames[0])
    assert gate.started.wait(WAIT)
    a.step(frames[1])
    assert a._async.steps.close(timeout=0.01) is False  # bounded: the step is still held
    gate.release.set()
    assert executor.stop(WAIT) is True
    assert [i for i, _ in gate.calls] == [0]  # the closed stream's queued step was not taken


# ---- a failing step -----------------------------------------------------------------------------------------
def test_a_failing_step_never_fails_a_frame_is_counted_and_the_stream_keeps_its_weights(
    tiny_model, frames, executor
) -> None:
    a = async_adapter(tiny_model, executor)
    a.step(frames[0])
    assert a._async.steps.flush(WAIT)
    before = {n: t.clone() for n, t in a.prediction_tensors().items()}
    real = a.adapt

    def exploding(stats: StepStats, view: Theta0View | None = None) -> None:
        raise RuntimeError("step exploded")

    a.adapt = exploding
    a.step(frames[1])
    assert a._async.steps.flush(WAIT)
    assert all(torch.equal(a.prediction_tensors()[n], t) for n, t in before.items())  # the weights it had
    a.adapt = real
    r = a.step(frames[2])  # served, with the last published weights; the failure reported
    assert r.stats.step_errors == 1 and r.class_logits.isfinite().all()
    assert a._async.steps.flush(WAIT)
    r = a.step(frames[3])
    assert r.stats.step_errors == 0 and a._async.steps.counts()[1] == 1
    assert a._async.steps.flush(WAIT)
    assert a._async.published.version >= 2  # the executor still steps this stream


# ---- fairness --------------------------------------------------------------------------------------------
def test_streams_steps_are_taken_round_robin(tiny_model, frames, executor) -> None:
    a, b, c = (async_adapter(tiny_model, executor) for _ in range(3))
    order: list[str] = []
    gates = {}
    for name, adapter in (("a", a), ("b", b), ("c", c)):
        gates[name] = Gate(adapter, step=lambda stats, view=None, n=name: order.append(n))
    gates["b"].release.set()
    gates["c"].release.set()
    a.step(frames[0])  # a's step runs and waits
    assert gates["a"].started.wait(WAIT)
    a.step(frames[1])  # a waits again, behind b and c which arrive before its step ends
    b.step(frames[0])
    c.step(frames[0])
    gates["a"].release.set()
    for s in (a, b, c):
        assert s._async.steps.flush(WAIT)
    assert order == ["a", "b", "c", "a"]


def test_a_stream_used_without_a_worker_runs_a_private_executor_that_its_close_stops(tiny_model, frames) -> None:
    a = build_adapter(tiny_model, "online", "full", seed=3, schedule="async", **SMALL)
    a.step(frames[0])
    private = a._async.executor
    assert a._async.owned and private.alive
    a.close()
    assert not private.alive


def test_a_shared_executor_outlives_the_streams_that_close(tiny_model, frames, executor) -> None:
    a = async_adapter(tiny_model, executor)
    a.step(frames[0])
    a.close()
    assert executor.alive
