"""The paper's memory ablations as configurations of one adapter (ttt/methods.py): what each method keeps between
frames, read from the adapters it builds (no frame is stepped: fast; tests/ttt/test_method_behaviour.py steps them)."""

from __future__ import annotations

import pytest

from mask2former_ttt.ttt import build_adapter

# method: (steps per frame, window, weights reset each frame, optimizer reset each frame)
MEMORY = {
    "main_only": (0, 1, False, False),
    "no_memory": (1, 1, True, True),
    "implicit_only": (1, 1, False, False),
    "explicit_only": (1, 16, True, True),
    "online": (1, 16, False, False),
}


@pytest.mark.parametrize("method", sorted(MEMORY))
def test_each_ablation_keeps_what_its_name_says(tiny_model, method: str) -> None:
    a = build_adapter(tiny_model, method, "full")
    cfg = a.cfg
    assert (cfg.steps_per_frame, cfg.window, cfg.reset_weights_each_frame, cfg.reset_optimizer_each_frame) == \
        MEMORY[method]
    assert a.method == method and a.adapts == (method != "main_only")
    assert a.window.maxlen == cfg.window


def test_whole_video_methods_are_refused_only_for_live_streams_and_the_default_seed_is_zero(tiny_model) -> None:
    from mask2former_ttt.ttt.methods import check_method

    assert check_method("offline_all_frames").needs_whole_video  # offline use: allowed by default
    with pytest.raises(ValueError, match="cannot run in the service"):
        check_method("offline_all_frames", live=True)
    with pytest.raises(ValueError, match="unknown method"):
        check_method("offline")
    assert build_adapter(tiny_model, "online", "full").seed == 0
