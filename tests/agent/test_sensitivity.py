import pytest

import agent.sensitivity as sens
from agent.errors import UserInputError


def test_profile_is_measured_then_served_from_cache(tiny_task, fast_settings, tmp_path, monkeypatch):
    calls = []
    real = sens.evaluate_policy
    monkeypatch.setattr(sens, "evaluate_policy", lambda *a, **k: calls.append(1) or real(*a, **k))
    p1 = sens.analyse_sensitivity(tiny_task, ratios=(0.3, 0.7), settings=fast_settings, cache_root=tmp_path)
    assert len(calls) == 2 * len(p1.units) == 10
    p2 = sens.analyse_sensitivity(tiny_task, ratios=(0.3, 0.7), settings=fast_settings, cache_root=tmp_path)
    assert len(calls) == 10, "second analysis must come from the cache"
    assert p2.accuracy == p1.accuracy and p2.key == p1.key
    # another setting is another cache entry
    sens.analyse_sensitivity(tiny_task, ratios=(0.5,), settings=fast_settings, cache_root=tmp_path)
    assert len(calls) == 15
    for u in p1.units:
        assert p1.drop(u, 0.0) == 0.0
        assert p1.drop(u, 0.5) == pytest.approx((p1.drop(u, 0.3) + p1.drop(u, 0.7)) / 2)
        assert 0 < p1.macs_share[u] <= 1
    assert p1.drop("block1.conv_a.0", 0.7) <= p1.drop("down1.0", 0.7) + 50  # sane magnitudes


def test_profile_exports_csv_and_png(tiny_task, fast_settings, tmp_path):
    p = sens.analyse_sensitivity(tiny_task, ratios=(0.5,), settings=fast_settings, cache_root=tmp_path)
    p.to_csv(tmp_path / "s.csv")
    sens.plot_sensitivity(p, tmp_path / "s.png")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0].startswith("unit,ratio,accuracy,acc_drop") and len(lines) == 1 + len(p.units)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_ratios(tiny_task):
    with pytest.raises(UserInputError, match=r"\(0, 1\)"):
        sens.analyse_sensitivity(tiny_task, ratios=(0.5, 1.2))
