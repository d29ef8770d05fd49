"""`prepare_model`: an interrupted run leaves OUT untouched and its state beside it; a rerun with the same
arguments continues from the last saved step, other arguments start over; --adapt-encoder reports agreement."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model.config import tiny_config
from model.ymodel import build_model
from mask2former_ttt.training import prepare as P


def _model():
    torch.manual_seed(0)
    model = build_model(tiny_config(image_size=64, class_names=["a", "b", "c"]))
    model.cfg.recon_trained = False
    return model.eval()


def _frames(n: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 64, 96), generator=g, dtype=torch.uint8) for _ in range(n)]


def test_an_interrupted_prepare_continues_where_it_stopped(tmp_path: Path, monkeypatch, caplog) -> None:
    torch.set_num_threads(1)
    out, opts = tmp_path / "ready", P.PrepareOptions(steps=6, batch_size=2, checkpoint_every=2)
    real = P._lr_factor

    def stop_at_5(step: int, steps: int) -> float:
        if step == 5:
            raise KeyboardInterrupt
        return real(step, steps)

    monkeypatch.setattr(P, "_lr_factor", stop_at_5)
    with pytest.raises(KeyboardInterrupt):
        P.prepare_model(_model(), _frames(), out, opts, {"source": "x"}, progress=False)
    assert not out.exists()  # nothing half-written in OUT
    assert (P.work_dir_for(out) / P.STATE_DIR / P.STATE_FILE).is_file()
    monkeypatch.setattr(P, "_lr_factor", real)
    with caplog.at_level(logging.INFO, logger=P.__name__):
        report = P.prepare_model(_model(), _frames(), out, opts, {"source": "x"}, progress=False)
    assert "continuing from step 4" in caplog.text
    assert report["steps"] == 6 and (out / "prepare.json").is_file() and not P.work_dir_for(out).exists()


def test_other_arguments_start_over_and_encoder_adaptation_reports_agreement(tmp_path: Path, caplog) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "ready"
    state = P.work_dir_for(out) / P.STATE_DIR
    opts = P.PrepareOptions(steps=3, batch_size=2, checkpoint_every=1)
    model = _model()
    names = P._trainable(model, False)
    P._save_state(state, model, names, P._optimizer(model, names, opts), 2, torch.Generator(),
                  {"fingerprint": "other arguments", "before": 9.0, "seconds": 1.0})
    adapt = P.PrepareOptions(steps=3, batch_size=2, checkpoint_every=1, adapt_encoder=True)
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        report = P.prepare_model(_model(), _frames(), out, adapt, {"source": "x"}, progress=False)
    assert "starting over" in caplog.text and report["steps"] == 3 and report["recon_loss_before"] != 9.0
    assert 0.0 <= report["distill_agreement"] <= 1.0
