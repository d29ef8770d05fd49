"""What each comparison method does differently from `online`, checked on its behaviour (not only that it runs).

The adapters are deterministic given their seed and generator state, so "starts from θ0" is checked as "gives
exactly the prediction of a fresh adapter put in the same window/RNG state", and "keeps its weights" as "differs
from the method that resets them, from the same start".
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.baselines import ClassBalanceReset
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import entropy_loss, self_train_loss
from model.masking import normalize, with_flag
from tests.random_model import without_drop_path
from model.ymodel import ENCODER_PREFIX

SMALL = {"batch_size": 2, "micro_batch": 2}


def _snapshot(adapter) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter.params.items()}


def _model_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def _same_state(model, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(t, before[n]) for n, t in model.state_dict().items())


def _work(model, frame: torch.Tensor) -> torch.Tensor:
    return to_working_resolution(frame, model.cfg.image_size)


def _frozen(model, frame: torch.Tensor):
    """θ0's prediction on one frame: (class logits (Q, K+1), mask logits (Q, h, w))."""
    model.eval()
    with torch.no_grad():
        out = model.predict(with_flag(normalize(_work(model, frame)[None], model.cfg)))
    return out.class_logits[0].float(), out.mask_logits[0].float()


def _same_prediction(r1, r2) -> bool:
    return torch.equal(r1.class_logits, r2.class_logits) and torch.equal(r1.mask_logits, r2.mask_logits)


def _changed(adapter) -> set[str]:
    return {n for n, p in adapter.params.items() if not torch.equal(p, adapter.theta0[n])}


@pytest.fixture(scope="module")
def trained_model():
    """The bundled jointly trained tiny model: unlike the random tiny model it makes confident predictions
    (about half of the pixels of the fixture clip above 0.9), which self-training needs for any pseudo-label."""
    from model.checkpoint import bundled_model_dir, load_checkpoint

    return load_checkpoint(bundled_model_dir()).eval()


# ---- memory ablations -------------------------------------------------------------------------------------
def test_implicit_only_keeps_weights_across_frames_but_windows_one_frame(tiny_model, frames):
    imp = build_adapter(tiny_model, "implicit_only", "full", **SMALL)
    nom = build_adapter(tiny_model, "no_memory", "full", **SMALL)
    # frame 1: both start at θ0 with a one-frame window and the same RNG: the same step, the same prediction
    assert _same_prediction(imp.step(frames[0]), nom.step(frames[0]))
    r_imp, r_nom = imp.step(frames[1]), nom.step(frames[1])
    assert len(imp.window) == 1
    # frame 2: implicit memory continues from frame 1's weights, no_memory restarts from θ0
    assert (r_imp.mask_logits - r_nom.mask_logits).abs().max() > 1e-6
    assert (r_imp.class_logits - r_nom.class_logits).abs().max() > 1e-6


def test_explicit_only_windows_k_frames_but_restarts_from_theta0_each_frame(tiny_model, frames):
    a = build_adapter(tiny_model, "explicit_only", "full", **SMALL)
    for f in frames[:2]:
        a.step(f)
        assert a.optimizer is None  # optimizer re-created every frame: no state kept between frames
    assert _changed(a), "it adapted"
    fresh = build_adapter(tiny_model, "explicit_only", "full", **SMALL)
    fresh.window.extend(a.window)
    fresh.frame_index = a.frame_index
    fresh.generator.set_state(a.generator.get_state())
    got, want = a.step(frames[2]), fresh.step(frames[2])
    assert len(a.window) == 3
    # frame 3 is exactly a θ0 start on the same 3-frame window
    assert _same_prediction(got, want)
    assert all(torch.equal(a.params[n], fresh.params[n]) for n in a.params)
    # and the window matters: from the same θ0 and RNG, a window of frames 1-3 gives another step than frame 3 alone
    alone = build_adapter(tiny_model, "no_memory", "full", **SMALL).step(frames[2])
    windowed = build_adapter(tiny_model, "explicit_only", "full", **SMALL)
    windowed.window.extend(list(a.window)[:2])
    assert not _same_prediction(windowed.step(frames[2]), alone)


def test_online_keeps_its_window_and_optimizer_state(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", window=3, **SMALL)
    for f in frames[:4]:
        a.step(f)
    assert len(a.window) == 3
    assert a.optimizer is not None and a.optimizer.state, "the default preset keeps its momentum between frames"


def test_main_only_never_steps_and_predicts_like_the_frozen_model(tiny_model, frames):
    before = _model_state(tiny_model)
    a = build_adapter(tiny_model, "main_only", "full", **SMALL)
    for f in frames[:3]:
        r = a.step(f)
        cls, masks = _frozen(tiny_model, f)
        assert torch.equal(r.class_logits, cls) and torch.equal(r.mask_logits, masks)
        assert r.stats.loss is None and r.stats.steps_taken == 0
    assert not a.params and a.optimizer is None
    assert _same_state(tiny_model, before)


# ---- Tent, self-training ----------------------------------------------------------------------------------
def _encoder_layernorm_names(model) -> set[str]:
    return {
        f"{ENCODER_PREFIX}{mn}.{pn}"
        for mn, m in model.encoder.named_modules()
        if isinstance(m, nn.LayerNorm)
        for pn, _ in m.named_parameters(recurse=False)
    }


def test_tent_adapts_only_encoder_norms_by_entropy(tiny_model, frames):
    tiny_model = without_drop_path(tiny_model)
    before = _model_state(tiny_model)
    a = build_adapter(tiny_model, "tent", "full", **SMALL)
    r = a.step(frames[0])
    norms = _encoder_layernorm_names(tiny_model)
    assert norms and set(a.params) == norms
    assert _changed(a), "the norm affines moved"
    # the loss of the first step is the mean per-pixel entropy of θ0's prediction on the (one-frame) window
    x = normalize(torch.stack([_work(tiny_model, frames[0])] * 2), tiny_model.cfg)
    with torch.no_grad():
        want = entropy_loss(lambda inp, mode: tiny_model(inp, mode=mode), x, a.cfg, torch.Generator())
    assert r.stats.loss == pytest.approx(want.item(), rel=1e-5)
    assert _same_state(tiny_model, before), "the shared model is never written"


def test_self_train_adapts_only_the_encoder_on_pseudo_labels_of_masked_input(trained_model, frames):
    # the objective alone: without the guard's feature-alignment term (the protocol's paper rows run without it too)
    trained_model = without_drop_path(trained_model)
    a = build_adapter(trained_model, "self_train", "full", guard=None, **SMALL)
    seen = []
    objective = a.objective

    def recording(forward, x, cfg, generator):
        seen.append((x.clone(), generator.get_state(), cfg))
        return objective(forward, x, cfg, generator)

    a.objective = recording
    r = a.step(frames[0])
    a.step(frames[1])
    encoder = {n for n, _ in trained_model.named_parameters() if n.startswith(ENCODER_PREFIX)}
    assert set(a.params) == encoder
    assert _changed(a), "confident pixels give pseudo-labels, so the encoder moves"
    # the objective: NLL on θ0's confident pseudo-labels with the student's input 80 % masked
    x, state, cfg = seen[0]
    assert cfg.mask_ratio == 0.8
    g = torch.Generator()
    g.set_state(state)
    with torch.no_grad():
        want = self_train_loss(lambda inp, mode: trained_model(inp, mode=mode), x, cfg, g)
    assert want.item() > 0 and r.stats.loss == pytest.approx(want.item(), rel=1e-5)


# ---- LN Adapt ---------------------------------------------------------------------------------------------
def test_ln_adapt_never_trains(tiny_model, frames):
    before = _model_state(tiny_model)
    a = build_adapter(tiny_model, "ln_adapt", "full", **SMALL)
    for f in frames[:3]:
        r = a.step(f)
        assert r.stats.loss is None and r.stats.steps_taken == 0
    assert not a.params and a.optimizer is None
    assert _same_state(tiny_model, before)


def test_ln_adapt_normalises_with_the_statistics_of_the_window(tiny_model, frames):
    main = build_adapter(tiny_model, "main_only")
    ref = main.step(frames[3])
    with_history = build_adapter(tiny_model, "ln_adapt", "full")
    for f in frames[:4]:
        r_hist = with_history.step(f)
    alone = build_adapter(tiny_model, "ln_adapt", "full")
    r_alone = alone.step(frames[3])
    assert (r_hist.mask_logits - ref.mask_logits).abs().max() > 1e-3
    # the earlier (different) frames of the window change the statistics, hence the prediction
    assert (r_hist.mask_logits - r_alone.mask_logits).abs().max() > 1e-4
    # a window of copies of one frame has that frame's statistics: same as the frame alone
    repeated = build_adapter(tiny_model, "ln_adapt", "full")
    for _ in range(3):
        r_rep = repeated.step(frames[3])
    assert torch.allclose(r_rep.mask_logits, r_alone.mask_logits, atol=1e-4)
    # with no weight on the window statistics (alpha 0) the hook is a plain LayerNorm: the frozen model
    plain = build_adapter(tiny_model, "ln_adapt", "full")
    plain.alpha = 0.0
    for f in frames[:4]:
        r_plain = plain.step(f)
    assert torch.allclose(r_plain.mask_logits, ref.mask_logits, atol=1e-4)
    assert torch.allclose(r_plain.class_logits, ref.class_logits, atol=1e-4)


# ---- Offline all frames -----------------------------------------------------------------------------------
def test_offline_runs_the_online_budget_in_prepare_and_then_only_predicts(tiny_model, frames):
    a = build_adapter(tiny_model, "offline_all_frames", "full", steps_per_frame=2, **SMALL)
    calls = []
    train_step = a.train_step
    a.train_step = lambda batch, stats, *valid: (calls.append(batch.shape[0]), train_step(batch, stats, *valid))[1]
    a.prepare(frames[:3])
    assert calls == [2] * 6, "len(frames) × steps_per_frame steps of B samples"
    w = _snapshot(a)
    assert _changed(a)
    first = a.step(frames[0])
    for f in frames[1:3]:
        r = a.step(f)
        assert r.stats.loss is None and r.stats.steps_taken == 0
    again = a.step(frames[0])
    assert len(calls) == 6
    assert all(torch.equal(w[n], a.params[n]) for n in w)
    assert _same_prediction(first, again), "no state changes between predictions"


# ---- Class balancing reset --------------------------------------------------------------------------------
def test_class_balance_reset_restarts_from_theta0_when_the_class_count_drifts(tiny_model, frames):
    a = ClassBalanceReset(build_adapter(tiny_model, "online", "full", **SMALL), max_drift=0)
    r0 = a.step(frames[0])  # a drift >= 0 always: reset after every frame
    assert r0.stats.reset and a.inner.rollbacks == 0
    assert not a.inner.params and a.inner.optimizer is None and a.inner.divergence.level is None, "back at θ0"
    assert len(a.inner.window) == 1 and a.inner.frame_index == 1, "the window and frame counter survive"
    r1 = a.step(frames[1])
    # frame 2 = a fresh adapter (θ0, new RNG) with frame 1 already in its window
    fresh = build_adapter(tiny_model, "online", "full", **SMALL)
    fresh.window.append(_work(tiny_model, frames[0]))
    fresh.frame_index = 1
    want = fresh.step(frames[1])
    assert _same_prediction(r1, want)


def test_class_balance_reset_keeps_adapting_without_drift(tiny_model, frames):
    a = ClassBalanceReset(build_adapter(tiny_model, "online", "full", **SMALL), max_drift=10**6)
    b = build_adapter(tiny_model, "online", "full", **SMALL)
    for f in frames[:3]:
        r, want = a.step(f), b.step(f)
        assert not r.stats.reset and _same_prediction(r, want)
    assert _changed(a.inner)


@pytest.mark.parametrize(
    ("adapted", "reference", "reset"),
    [(5, 3, True), (3, 5, True), (4, 3, False), (3, 4, False), (3, 3, False)],
)
def test_class_balance_reset_threshold(tiny_model, frames, monkeypatch, adapted, reference, reset):
    calls = []

    def class_count(class_logits, mask_logits):
        calls.append((class_logits, mask_logits))
        return adapted if len(calls) % 2 == 1 else reference

    monkeypatch.setattr(ClassBalanceReset, "class_count", staticmethod(class_count))
    a = ClassBalanceReset(build_adapter(tiny_model, "online", "full", **SMALL), max_drift=2)
    r = a.step(frames[0])
    assert r.stats.reset is reset
    assert bool(a.inner.params) is not reset
    # the count is compared with θ0's prediction on the same frame
    cls, masks = _frozen(tiny_model, frames[0])
    assert torch.equal(calls[0][0], r.class_logits)
    assert torch.allclose(calls[1][0], cls) and torch.allclose(calls[1][1], masks)


# ---- Temporal smoothing -----------------------------------------------------------------------------------
def test_temporal_smoothing_is_the_mean_of_the_last_span_probabilities(tiny_model, frames):
    a = build_adapter(tiny_model, "temporal_smoothing", "full", **SMALL)  # online inside, span 3
    raw = build_adapter(tiny_model, "online", "full", **SMALL)
    cls_hist, mask_hist = [], []
    for t, f in enumerate(frames[:5]):
        r, inner = a.step(f), raw.step(f)
        cls_hist.append(inner.class_logits.softmax(-1))
        mask_hist.append(inner.mask_logits.sigmoid())
        lo = max(0, t - 2)
        assert torch.allclose(r.class_logits.exp(), torch.stack(cls_hist[lo:]).mean(0), atol=1e-5)
        assert torch.allclose(r.mask_logits.sigmoid(), torch.stack(mask_hist[lo:]).mean(0), atol=1e-5)
    a.reset()
    raw.reset()
    r, inner = a.step(frames[5]), raw.step(frames[5])
    assert torch.allclose(r.mask_logits.sigmoid(), inner.mask_logits.sigmoid(), atol=1e-5), "reset clears history"
