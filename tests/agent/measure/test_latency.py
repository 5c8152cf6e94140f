import pytest
import torch

import agent.measure.lut as lut
from agent.constraints import Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.measure import LatencyConfig, measure_latency_ratio
from agent.pruning import PruningGraph
from agent.tasks import build_model

from . import fake_timing

CFG = LatencyConfig(batch_size=32, warmup=2, repeats=9)


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return PruningGraph(build_model("cnn1d", (1, 40), 10), torch.randn(1, 1, 40))


def test_table_predicts_dense_and_uniform_latency(graph, tmp_path):
    """Absolute milliseconds drift with machine load, so the dense figure is checked against the table's own
    calibration and the speed-up against a paired measurement (both models timed in the same rounds)."""
    table = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, cache_root=tmp_path)
    assert set(table.layers) >= {"stem.0", "down1.0", "fc"}
    assert table.predict({}) == pytest.approx(table.dense_ms, rel=0.5)
    scores = {u.name: torch.rand(u.channels) for u in graph.units}
    plan = graph.select(scores, dict.fromkeys(graph.unit_names(), 0.5))
    kept = {u.name: u.channels - len(plan.get(u.name, ())) for u in graph.units}
    paired = measure_latency_ratio(graph.apply(plan), graph.model, (1, 40), config=CFG)
    assert table.predict_ratio(kept) == pytest.approx(paired.ratio, rel=0.5), (table.predict_ratio(kept), paired)
    assert table.predict({u.name: 1 for u in graph.units}) < table.predict({})


def test_table_is_cached_and_keyed_by_settings(graph, tmp_path, monkeypatch):
    first = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, cache_root=tmp_path)
    monkeypatch.setattr(lut, "measure_latency", lambda *a, **k: pytest.fail("must come from the cache"))
    again = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, cache_root=tmp_path)
    assert again.key == first.key and again.layers.keys() == first.layers.keys()
    assert again.predict({}) == pytest.approx(first.predict({}))
    with pytest.raises(pytest.fail.Exception):
        lut.build_latency_table(graph, input_shape=(1, 40), config=LatencyConfig(batch_size=2), cache_root=tmp_path)


def test_layer_table_interpolates_bilinearly():
    t = lut.LayerTable("x", [0.5, 1.0], [0.5, 1.0], [[1.0, 2.0], [3.0, 4.0]])
    assert t.at(0.75, 0.75) == pytest.approx(2.5)
    assert t.at(1.0, 0.5) == pytest.approx(3.0)
    assert t.at(2.0, 2.0) == pytest.approx(4.0)  # clamped


@pytest.mark.parametrize("text", ["12 parsecs", "-3ms", "0", "1.5", "fast", "0ms"])
def test_bad_latency_strings(text):
    with pytest.raises(UserInputError) as err:
        LatencyTarget.parse(text)
    assert text.strip() in str(err.value) or "1.5" in str(err.value)


@pytest.mark.parametrize("text,value,unit", [("0.6", 0.6, "ratio"), ("12ms", 12.0, "ms"), ("12 ms", 12.0, "ms"),
                                             ("0.5s", 500.0, "ms"), ("800us", 0.8, "ms")])
def test_latency_strings(text, value, unit):
    t = LatencyTarget.parse(text)
    assert t.value == pytest.approx(value) and t.unit == unit


def test_absolute_latency_target_checks_milliseconds():
    c = Constraints(latency_target=LatencyTarget.parse("2ms"))
    assert c.violations(flops_ratio=1, params_ratio=1, latency_ratio=0.1, latency_ms=2.5, acc_drop=0)
    assert not c.violations(flops_ratio=1, params_ratio=1, latency_ratio=0.9, latency_ms=1.5, acc_drop=0)


def test_predicted_milliseconds_follow_todays_dense_measurement(tiny_task):
    """A table cached under other load keeps its ratios; its milliseconds are rescaled to the dense measured now."""
    from agent.evaluation import EvalSettings, get_engine

    settings = EvalSettings(latency=CFG)
    engine = get_engine(tiny_task)
    table = engine.attach_latency_model(settings, cache=False)
    try:
        dense_ms = engine.dense(settings).latency_ms
        kept = {u.name: max(1, u.channels // 2) for u in engine.units}
        ms, ratio = engine.predict_latency(kept, settings)
        assert ratio == pytest.approx(table.predict_ratio(kept))
        assert ms == pytest.approx(ratio * dense_ms)
        assert engine.predict_latency({}, settings)[0] == pytest.approx(dense_ms)
        table_ms = table.predict(kept)
        slow = table.predict

        def three_times_slower(kept_channels):
            return 3.0 * slow(kept_channels)

        table.predict = three_times_slower  # as if the table had been built on a loaded machine
        ms_loaded, ratio_loaded = engine.predict_latency(kept, settings)
        assert ratio_loaded == pytest.approx(ratio) and ms_loaded == pytest.approx(ms)
        assert table.predict(kept) == pytest.approx(3.0 * table_ms)
    finally:
        engine.latency_model = None


def test_paired_rounds_report_one_consistent_dense_reference(graph):
    """Dense and pruned ms come from the same paired rounds as the ratio, with an interval around it."""
    from agent.measure import measure_latency_ratio

    scores = {u.name: torch.rand(u.channels) for u in graph.units}
    pruned = graph.apply(graph.select(scores, dict.fromkeys(graph.unit_names(), 0.5)))
    cfg = LatencyConfig(batch_size=16, warmup=1, repeats=5, rounds=3, max_rounds=6, threads=1)
    paired = measure_latency_ratio(pruned, graph.model, (1, 40), config=cfg)
    assert paired.model_ms == pytest.approx(paired.ratio * paired.dense_ms)
    assert paired.lo <= paired.ratio <= paired.hi
    assert 3 <= paired.rounds <= 6 and paired.threads == 1


def test_interval_narrows_with_agreeing_rounds_and_a_noisy_one_fails_the_target():
    from agent.evaluation import EvalResult
    from agent.measure import ratio_interval
    from agent.policy import Policy

    r, lo, hi = ratio_interval([0.5, 0.5, 0.5])
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    r, lo, hi = ratio_interval([0.3, 0.5, 0.7])
    assert lo < r < hi and hi > 0.6
    assert ratio_interval([0.5])[2] == float("inf")  # one reading never bounds the ratio
    c = Constraints(latency_target=LatencyTarget(0.6))
    noisy = EvalResult(Policy({}), flops_ratio=1.0, params_ratio=1.0, acc_drop=0.0, latency_ratio=r,
                       latency_ratio_lo=lo, latency_ratio_hi=hi, latency_ms=r * 10, dense_latency_ms=10.0)
    assert r < 0.6 and c.check_result(noisy), "met only when the interval's upper end is under the target"
    tight = EvalResult(Policy({}), flops_ratio=1.0, params_ratio=1.0, acc_drop=0.0, latency_ratio=0.5,
                       latency_ratio_lo=0.49, latency_ratio_hi=0.52, latency_ms=5.0, dense_latency_ms=10.0)
    assert not c.check_result(tight)


def test_latency_floor_refuses_an_unreachable_target(graph, tmp_path):
    from agent.search.feasibility import check_latency_floor, latency_floor

    table = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, cache_root=tmp_path, round_to=8)
    floor = latency_floor(graph, table, max_ratio=0.9, round_to=8)
    assert 0 < floor < 1
    with pytest.raises(UserInputError, match="latency floor.*--latency-batch"):
        check_latency_floor(graph, table, constraints=Constraints(latency_target=LatencyTarget(floor * 0.5)),
                            max_ratio=0.9, round_to=8)
    assert check_latency_floor(graph, table, constraints=Constraints(latency_target=LatencyTarget(1.0)),
                               max_ratio=0.9, round_to=8) == pytest.approx(floor)


def test_threads_warning_names_the_free_cores(monkeypatch):
    import agent.measure.threads as th

    monkeypatch.setattr(th, "_busy_cores", lambda sample_s=0.2: float(th.available_cores()))
    assert th.free_cores() == 1
    with pytest.warns(RuntimeWarning, match=r"only 1 of \d+ cores are free.*--threads 1"):
        assert th.check_threads(th.available_cores() + 1) == 1
    with th.torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1


def test_throughput_watch_warns_once_when_steps_slow_down(monkeypatch):
    import agent.measure.threads as th

    clock = iter(i * 0.01 for i in range(10_000))  # 100 steps/s ...
    monkeypatch.setattr(th.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(th, "free_cores", lambda own_threads=0: 1)
    watch = th.ThroughputWatch("training", baseline_steps=10, window=10)
    for _ in range(30):
        watch.step()
    assert watch.reference is not None and not watch.warned
    slow = iter(100.0 + i * 0.5 for i in range(10_000))  # ... then 2 steps/s
    monkeypatch.setattr(th.time, "perf_counter", lambda: next(slow))
    with pytest.warns(RuntimeWarning, match="training slowed from .* steps/s .*--threads"):
        for _ in range(30):
            watch.step()
    assert watch.warned


def test_a_burst_during_the_build_neither_makes_narrow_layers_slow_nor_tilts_the_model(graph, tmp_path, monkeypatch):
    """Load only slows timings down: a narrow cell slower than a wider one, or one wild calibration reading, is noise."""
    from agent.measure.latency import LatencyStats

    calls = fake_timing.install(monkeypatch, burst=lambda n: 5.0 if n == 4 else 1.0)  # the 4th reading: a burst

    def cost(layer, shape, config):  # one narrow width hits a burst too
        w = fake_timing.width(layer)
        return LatencyStats(0.01 * w * (50.0 if w == 8 else 1.0), 0.0, 3, None)

    monkeypatch.setattr(lut, "measure_latency", cost)
    table = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, round_to=8, cache=False)
    for layer in table.layers.values():
        ms = torch.tensor(layer.ms)
        assert bool((ms[:-1] <= ms[1:] + 1e-12).all()) and bool((ms[:, :-1] <= ms[:, 1:] + 1e-12).all()), layer.name
    assert len(calls) == 6, "three uniform and three mixed calibration policies"
    assert table.predict_ratio({}) == 1.0 and table.predict({}) == pytest.approx(table.dense_ms)
    assert table.prunable_share == pytest.approx(0.9, abs=0.1), "the median ignores the one wild reading"
    kept = {u.name: u.channels // 2 for u in graph.units}
    assert 0.1 < table.predict_ratio(kept) < 1.0


def test_the_floor_precheck_keeps_ignored_layers_whole_like_the_search(tmp_path, monkeypatch):
    """The floor before training is the search's floor: the same units, so the same (cached) table."""
    from agent.pruning.coverage import build_graph
    from agent.search.feasibility import precheck_latency_floor

    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path))
    fake_timing.install(monkeypatch)  # the floors are compared: not on a loaded machine's noise
    cfg = LatencyConfig(batch_size=16, warmup=1, repeats=3, min_repeats=2, threads=1)
    kw = dict(model_spec="cnn1d", input_shape=(1, 40), num_classes=10, latency=cfg, max_ratio=0.9, round_to=8,
              constraints=Constraints(latency_target=LatencyTarget(1.0)))
    everything = precheck_latency_floor(**kw)
    kept_whole = precheck_latency_floor(**kw, ignore_layers=("down2.0",))
    assert kept_whole > everything, "a wide unit kept whole raises the floor"
    tables = sorted((tmp_path / "latency").glob("*.json"))
    assert len(tables) == 2
    torch.manual_seed(0)
    searched = build_graph(build_model("cnn1d", (1, 40), 10), torch.zeros(1, 1, 40), ignore_layers=("down2.0",))
    lut.build_latency_table(searched, input_shape=(1, 40), config=cfg, round_to=8)
    assert sorted((tmp_path / "latency").glob("*.json")) == tables, "the search reuses the precheck's table"
