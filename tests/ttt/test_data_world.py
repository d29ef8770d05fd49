"""World generator, camera paths and temporal smoothness of the synthetic videos."""

from __future__ import annotations

import numpy as np
import pytest

from mask2former_ttt.data import SYNTHETIC, CameraPose, SyntheticVideo, World, make_video_spec
from mask2former_ttt.data.camera import random_pose, required_width, video_path
from mask2former_ttt.data.seeding import derive_seed, rng_for


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(7, 1200, 256)


def test_world_has_all_classes_and_instances(world: World) -> None:
    hist = world.class_histogram()
    assert SYNTHETIC.num_classes >= 7
    assert (hist > 0).all(), dict(zip(SYNTHETIC.class_names, hist.tolist()))
    assert world.num_instances > 5
    near = world.sem[3]
    thing = np.isin(near, SYNTHETIC.thing_ids)
    assert (world.inst[3][thing] > 0).all() and (world.inst[~np.isin(world.sem, SYNTHETIC.thing_ids)] == 0).all()


def test_render_shapes_dtypes_and_size_parameter(world: World) -> None:
    for size in [(128, 160), (96, 96), (256, 256)]:
        f = world.render(CameraPose(600, 160, 180), size)
        assert f.image.shape == (*size, 3) and f.image.dtype == np.uint8
        assert f.semantic.shape == size and f.semantic.dtype == np.uint8
        assert f.instance.shape == size and f.instance.dtype == np.int32
        assert f.semantic.max() < SYNTHETIC.num_classes
        # things carry instance ids, stuff does not
        thing = np.isin(f.semantic, SYNTHETIC.thing_ids)
        assert (f.instance[thing] > 0).all() and (f.instance[~thing] == 0).all()


def test_world_generation_is_deterministic() -> None:
    a, b = World.generate(3, 400, 128), World.generate(3, 400, 128)
    c = World.generate(4, 400, 128)
    for name in ("sem", "inst", "base", "tex", "tex2"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.base, c.base)


def test_seeds_are_named_streams() -> None:
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2) != derive_seed(1, "a", 1)
    assert rng_for(5, "x").integers(1 << 30) == rng_for(5, "x").integers(1 << 30)


def test_camera_path_is_smooth_and_stays_inside() -> None:
    size = (128, 160)
    path = video_path(200, size, 256, rng_for(1, "path"))
    x = np.array([p.x for p in path])
    v = np.array([p.view_h for p in path])
    step_px = np.diff(x) / (v[:-1] / size[0])  # output pixels per frame
    assert (step_px > 0.5).all() and (step_px < 8).all()
    assert np.abs(np.diff(v)).max() < 0.02 * v.mean()  # slow zoom
    width = required_width(path, size)
    assert all(p.x - p.view_h * 160 / 128 / 2 >= 0 and p.x + p.view_h * 160 / 128 / 2 <= width for p in path)
    pose = random_pose(1000, 256, size, rng_for(2, "still"))
    assert 0 < pose.view_h <= 256


def test_temporal_smoothness() -> None:
    video = SyntheticVideo(make_video_spec("v", "test", "clean", 11, 60))
    frames = [f.image.astype(np.float32) for f in video]
    consecutive = np.mean([np.abs(frames[t + 1] - frames[t]).mean() for t in range(0, 9)])
    far = np.mean([np.abs(frames[t + 50] - frames[t]).mean() for t in range(0, 9)])
    assert consecutive * 2.5 < far, (consecutive, far)
    sem = [f.semantic for f in SyntheticVideo(video.spec, video.world)]
    agree_1 = np.mean([(sem[t + 1] == sem[t]).mean() for t in range(9)])
    agree_50 = np.mean([(sem[t + 50] == sem[t]).mean() for t in range(9)])
    assert agree_1 > 0.8 and agree_1 > agree_50 + 0.1, (agree_1, agree_50)


def _python_lines_run(fn) -> int:
    """How many Python lines `fn()` executes (every frame, every loop iteration counted); numpy's C loops are not."""
    import sys

    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(old)
    return count


def test_render_is_a_vectorised_gather(world: World) -> None:
    """Rendering must stay cheap enough to generate videos on the fly (the old check asked for > 100 fps; a
    timing is not a unit test). What made it fast is that it is a fixed number of numpy gathers: the Python work
    does not grow with the frame size, and stays small."""
    pose = CameraPose(600, 160, 180)
    small = _python_lines_run(lambda: world.render(pose, (16, 20)))
    large = _python_lines_run(lambda: world.render(pose, (256, 320)))
    assert large == small, (small, large)
    assert small < 300, small
