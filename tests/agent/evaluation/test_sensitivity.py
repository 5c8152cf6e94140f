import pytest

import agent.evaluation.sensitivity as sens
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


def test_with_a_latency_table_the_curves_are_its_predictions_and_nothing_is_timed(tiny_task, fast_settings, tmp_path,
                                                                                     monkeypatch):
    import agent.evaluation.core as core
    from agent.evaluation import get_engine
    from agent.policy import Policy

    engine = get_engine(tiny_task)
    engine.attach_latency_model(fast_settings, cache=False)
    try:
        engine.dense(fast_settings)  # the dense reference every prediction's milliseconds scale
        monkeypatch.setattr(core, "measure_latency_ratio", lambda *a, **k: pytest.fail("a sensitivity point was timed"))
        p = sens.analyse_sensitivity(tiny_task, ratios=(0.3, 0.7), settings=fast_settings, cache_root=tmp_path)
        for u in p.units:
            for r, lat in zip(p.ratios, p.latency_ratio[u], strict=True):
                kept = engine.kept_channels(engine.plan(Policy({u: r}, "l2"), fast_settings))
                assert lat == pytest.approx(engine.latency_model.predict_ratio(kept))
            assert p.latency_ratio[u][1] < 1.0
        without = sens._cache_key(tiny_task, p.ratios, "l2", fast_settings)
        assert p.key != without, "a table-predicted profile is not served as a measured one"
    finally:
        engine.latency_model = None


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


def _synthetic_profile(n_units: int, *, latency_shares: dict[str, float] | None = None) -> sens.SensitivityProfile:
    units = [f"layer{i}" for i in range(n_units)]
    return sens.SensitivityProfile(
        ratios=[0.5], units=units, dense_accuracy=90.0, accuracy={u: [80.0 - i] for i, u in enumerate(units)},
        flops_ratio={u: [0.9] for u in units}, latency_ratio={u: [0.99] for u in units},
        macs_share={u: 2 / n_units for u in units}, latency_share=latency_shares or {u: 0.01 for u in units})


def test_every_curve_has_its_own_look_past_ten_units(tmp_path):
    styles = sens.curve_styles(40)
    assert len({tuple(sorted(s.items())) for s in styles}) == 40
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 40  # even without markers
    p = _synthetic_profile(14)
    sens.plot_sensitivity(p, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_and_csv_name_the_overlapping_macs_column_honestly(tmp_path):
    from agent.cli.display import SENSITIVITY_HEADER, sensitivity_rows

    p = _synthetic_profile(3, latency_shares={"layer0": 0.0004, "layer1": 0.25, "layer2": 0.0})
    p.to_csv(tmp_path / "s.csv")
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert "macs_touched" in header and "macs_share" not in header
    assert "MACs touched" in SENSITIVITY_HEADER and "MACs share" not in SENSITIVITY_HEADER
    rows = {r[0]: r for r in sensitivity_rows(p)}
    assert rows["layer0"][3] == "0.04%"  # a unit that costs time never prints as zero
    assert rows["layer1"][3] == "25%"
    assert "noise" in rows["layer2"][3]
