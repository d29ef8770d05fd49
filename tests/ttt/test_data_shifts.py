"""Shift families: each changes the image, severity ramps, labels are untouched, segments switch."""

from __future__ import annotations

import numpy as np
import pytest

from mask2former_ttt.data import FAMILIES, SHIFT_FAMILIES, SyntheticVideo, make_video_spec
from mask2former_ttt.data.shifts import ShiftProgram, make_program, segments_program, single_family

N = 50  # frames; ramp over the first 40 % = 20 frames


@pytest.fixture(scope="module")
def clean() -> SyntheticVideo:
    return SyntheticVideo(make_video_spec("c", "test", "clean", 21, N, (96, 120)))


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_severity_schedule() -> None:
    p = single_family("fog", 200, seed=1)
    sev = [p.severity_at(t) for t in range(200)]
    assert sev[0] == 0.0 and sev[40] == pytest.approx(0.5) and sev[80] == 1.0 and sev[199] == 1.0
    assert all(b >= a for a, b in zip(sev, sev[1:]))
    assert max(sev[80:]) == min(sev[80:]) == 1.0
    assert [single_family("clean", 10, 0).severity_at(t) for t in range(10)] == [0.0] * 10
    with pytest.raises(ValueError):
        single_family("nope", 10, 0)


@pytest.mark.parametrize("family", SHIFT_FAMILIES)
def test_family_changes_image_and_ramps(family: str, clean: SyntheticVideo) -> None:
    video = SyntheticVideo(make_video_spec("s", "test", family, 21, N, (96, 120)), clean.world)
    assert video.poses == clean.poses
    f0, c0 = video.frame(0), clean.frame(0)
    assert np.array_equal(f0.image, c0.image)  # severity 0 is the identity
    d = {}
    for t in (5, 10, 20, 30):
        f, c = video.frame(t), clean.frame(t)
        assert np.array_equal(f.semantic, c.semantic) and np.array_equal(f.instance, c.instance)
        d[t] = _diff(f.image, c.image)
    assert d[5] > 0
    assert d[5] < d[20] and d[10] < d[20], d
    assert d[20] > 4.0, d  # a visible change at full severity


def test_clean_family_is_identity(clean: SyntheticVideo) -> None:
    v = SyntheticVideo(make_video_spec("c2", "test", "clean", 21, N, (96, 120)), clean.world)
    assert all(np.array_equal(v.frame(t).image, clean.frame(t).image) for t in (0, 25, 49))


def test_shifts_are_reproducible(clean: SyntheticVideo) -> None:
    for fam in ("noise", "drift", "fog"):
        a = SyntheticVideo(make_video_spec("a", "test", fam, 21, N, (96, 120)), clean.world)
        b = SyntheticVideo(make_video_spec("b", "test", fam, 21, N, (96, 120)), clean.world)
        assert np.array_equal(a.frame(33).image, b.frame(33).image)
    n1 = make_program("noise", N, 5)
    n2 = make_program("noise", N, 6)
    f = clean.frame(30)
    assert not np.array_equal(n1.apply(f, 30), n2.apply(f, 30))


def test_segments_program() -> None:
    p = segments_program(200, seed=3)
    assert p.family == "segments" and len(p.segments) == 4
    fams = [s.family for s in p.segments]
    assert len(set(fams)) == 4 and set(fams) <= set(SHIFT_FAMILIES)
    for s in p.segments:
        assert p.severity_at(s.start) == 0.0 and p.severity_at(s.stop - 1) == 1.0
        assert p.family_at(s.start) == s.family
    assert p.segments[0].start == 0 and p.segments[-1].stop == 200
    q = ShiftProgram.from_json(p.to_json())
    assert q.segments == p.segments and q.seed == p.seed
    assert segments_program(200, seed=3).segments == p.segments  # seeded order
    explicit = make_program("segments", 90, 1, families=("fog", "noise", "blur"))
    assert [s.family for s in explicit.segments] == ["fog", "noise", "blur"]


def test_families_constant() -> None:
    assert set(FAMILIES) == {"clean", "drift", "noise", "fog", "contrast", "blur", "jpeg"}


# ---- drift-and-return and long cycling streams -------------------------------------------------------------------
def test_return_program_is_clean_then_an_excursion_then_clean() -> None:
    from mask2former_ttt.data.shifts import RETURN, make_program

    prog = make_program(RETURN, 200, seed=3)
    sev = [prog.severity_at(t) for t in range(200)]
    fam = [prog.family_at(t) for t in range(200)]
    assert prog.family == RETURN
    assert sev[:41] == [0.0] * 41 and fam[:41] == ["clean"] * 41  # 20 % clean; the excursion starts at 0
    assert max(sev) == 1.0 and 90 <= sev.index(1.0) <= 100  # at its maximum around mid-video
    assert sev[150:] == [0.0] * 50 and fam[150:] == ["clean"] * 50  # back to clean for the final 25 %
    assert all(f == "drift" for f, s in zip(fam, sev) if s > 0)
    assert all(a <= b for a, b in zip(sev[40:90], sev[41:91])) and all(a >= b for a, b in zip(sev[110:150], sev[111:151]))
    again = type(prog).from_json(prog.to_json())
    assert [again.severity_at(t) for t in range(200)] == sev  # the profile survives videos.json


def test_cycle_program_alternates_clean_and_every_shift_family() -> None:
    from mask2former_ttt.data.shifts import CYCLE, SHIFT_FAMILIES, make_program

    prog = make_program(CYCLE, 5000, seed=1)
    assert prog.family == CYCLE and prog.n_frames == 5000 and len(prog.segments) == 20
    assert [s.family for s in prog.segments[0::2]] == ["clean"] * 10
    assert set(s.family for s in prog.segments[1::2]) == set(SHIFT_FAMILIES)


def test_final_clean_segment_of_a_return_video() -> None:
    from mask2former_ttt.data.shifts import RETURN, make_program
    from mask2former_ttt.evaluation.report import final_clean_segment

    prog = make_program(RETURN, 200, seed=3)
    assert final_clean_segment([prog.family_at(t) for t in range(200)]) == (150, 200)
    assert final_clean_segment(["clean"] * 10) is None and final_clean_segment(["fog"] * 10) is None
