import gymnasium
import numpy as np
import pytest

import env as env_pkg
from agent.constraints import Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.evaluation import EvalResult, EvalSettings, evaluate_policy, get_engine
from agent.measure import LatencyConfig
from agent.pruning.importance import normalized
from env import ENV_ID, LayerPruningEnv
from env import pruning_env as env_module
from env.features import squash_drop


def _episode(e, actions):
    obs, _ = e.reset(seed=0)
    trace, done = [obs], False
    i = 0
    while not done:
        obs, reward, done, truncated, info = e.step(np.asarray([actions[i]], dtype=np.float32))
        assert not truncated
        trace.append(obs)
        i += 1
    return trace, reward, info


@pytest.fixture()
def make_env(tiny_task):
    from agent.evaluation import get_engine

    get_engine(tiny_task).latency_model = None  # a table another test's search attached to the shared engine

    def make(**kw):
        return LayerPruningEnv(tiny_task, **kw)

    return make


def test_make_without_kwargs_builds_on_the_default_task(tiny_task, monkeypatch):
    calls = []
    monkeypatch.setattr(env_module, "_build_task", lambda: calls.append(1) or tiny_task)
    e = gymnasium.make(ENV_ID)
    u = e.unwrapped
    assert calls == [1] and isinstance(u, LayerPruningEnv)
    assert u.constraints.flops_target == 0.5 and u.config.reward == "acc" and u.config.action_mode == "ratio"
    space = e.observation_space
    assert space.dtype == np.float32 and np.isfinite(space.low).all() and np.isfinite(space.high).all()
    assert space.shape == (len(u.feature_names),)
    assert e.action_space.shape == (1,) and e.action_space.low[0] == -1 and e.action_space.high[0] == 1
    obs, info = e.reset(seed=0)
    assert space.contains(obs) and info["unit"] == u.units[0].name
    # sensitivity features are the measured drops of the first unit
    drops = u.profile.drops(u.units[0].name)
    first = [float(obs[u.feature_names.index(f"drop@{r:g}")]) for r in u.profile.ratios]
    assert first == pytest.approx([squash_drop(d) for d in drops], abs=1e-6)
    assert any(abs(x) > 0.01 for x in first)


@pytest.mark.parametrize("mode", ["ratio", "threshold"])
def test_env_passes_gymnasium_and_sb3_checkers(make_env, mode):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    e = make_env(action_mode=mode)
    check_env(e, skip_render_check=True)
    sb3_check_env(e, warn=True)


def test_reset_seed_and_steps_are_deterministic(make_env):
    actions = [0.7, -0.2, 0.4, 1.0, 0.1]
    a, b = make_env(), make_env()
    ta, ra, ia = _episode(a, actions)
    tb, rb, ib = _episode(b, actions)
    assert all(np.array_equal(x, y) for x, y in zip(ta, tb, strict=True))
    assert ra == rb and ia["policy"] == ib["policy"]
    assert ia["result"].accuracy == ib["result"].accuracy and ia["result"].macs == ib["result"].macs
    again, _ = a.reset(seed=0)
    assert np.array_equal(again, ta[0])


def test_all_zero_actions_give_the_dense_model(make_env, tiny_task):
    timed = EvalSettings(eval_limit=512, latency=LatencyConfig(batch_size=16, warmup=1, repeats=5, min_repeats=3))
    e = make_env(constraints=Constraints(), settings=timed, profile=make_env().profile)
    _, reward, info = _episode(e, [0.0] * e.num_units)
    res, dense = info["result"], get_engine(tiny_task).dense(e.settings)
    assert all(r == 0.0 for r in info["policy"].ratios.values())
    assert res.accuracy == dense.accuracy and res.macs == dense.macs and res.flops_ratio == 1.0
    assert res.params == dense.params
    # same model, timed against the dense one in paired rounds: only timing noise separates them
    assert res.latency_ms > 0 and dense.latency_ms > 0 and 0.5 < res.latency_ratio < 2.0
    assert reward == pytest.approx(-(1 - dense.accuracy / 100))


@pytest.mark.parametrize("mode", ["ratio", "threshold"])
@pytest.mark.parametrize("target", [0.3, 0.5])
def test_maximal_actions_meet_the_flops_target(make_env, mode, target):
    e = make_env(flops_target=target, action_mode=mode)
    _, reward, info = _episode(e, [1.0] * e.num_units)
    res = info["result"]
    assert res.ok and res.feasible
    assert target * 0.97 <= res.flops_ratio <= target
    assert reward == pytest.approx(-(1 - res.accuracy / 100))


def test_random_actions_never_exceed_the_target_and_evaluate_through_the_injected_evaluator(tiny_task, make_env):
    calls = []

    def evaluator(policy):
        calls.append(policy)
        return evaluate_policy(tiny_task, policy, settings=e.settings, constraints=e.constraints)

    e = make_env(flops_target=0.4, evaluator=evaluator)
    rng = np.random.default_rng(0)
    for _ in range(3):
        _, _, info = _episode(e, rng.uniform(-1, 1, e.num_units).tolist())
        assert info["result"].flops_ratio <= 0.4
        assert info["policy"] is calls[-1]
    assert len(calls) == 3 and len({p.key() for p in calls}) == 3


def test_threshold_mode_removes_channels_under_the_normalised_importance(make_env, tiny_task):
    e = make_env(constraints=Constraints(), action_mode="threshold")
    e.reset(seed=0)
    unit = e.units[0]
    scores = normalized(e.scores[unit.name])
    for a in (0.3, 0.6, 0.9):
        expected = float((scores < a).float().mean())
        assert e.ratio_of_action(a, 0) == pytest.approx(min(expected, e.config.max_ratio))
        via_engine = get_engine(tiny_task).thresholds_to_policy({unit.name: a}, importance="l2", settings=e.settings)
        assert e.ratio_of_action(a, 0) == pytest.approx(min(via_engine.ratios[unit.name], e.config.max_ratio))
    # the demonstration helper inverts the mapping (to the channel grid)
    for r in (0.25, 0.5):
        got = e.ratio_of_action(float(e.action_for_ratio(r)[0]), 0)
        assert abs(got - r) <= 1.0 / unit.channels + 1e-9
    _, _, info = _episode(e, [0.95] + [0.0] * (e.num_units - 1))
    assert info["policy"].ratios[unit.name] > 0 and info["result"].flops_ratio < 1.0


def test_ratio_mode_maps_actions_linearly_and_reports_progress(make_env):
    e = make_env(constraints=Constraints(), min_ratio=0.1, max_ratio=0.8)
    obs, _ = e.reset(seed=0)
    assert e.ratio_of_action(-0.5, 0) == 0.1 and e.ratio_of_action(0.0, 0) == 0.1
    assert e.ratio_of_action(0.5, 0) == pytest.approx(0.45) and e.ratio_of_action(1.0, 0) == pytest.approx(0.8)
    names = e.feature_names
    assert obs[names.index("reduced")] == 0 and obs[names.index("remaining")] == pytest.approx(1.0)
    obs, reward, done, _, info = e.step(np.asarray([1.0], dtype=np.float32))
    assert reward == 0.0 and not done and info["ratio"] == pytest.approx(0.8)
    assert obs[names.index("prev_action")] == pytest.approx(0.8) and obs[names.index("reduced")] > 0
    assert 0 < obs[names.index("remaining")] < 1


def test_step_after_the_end_needs_a_reset(make_env):
    e = make_env()
    _episode(e, [0.5] * e.num_units)
    with pytest.raises(RuntimeError, match="reset"):
        e.step(np.zeros(1, dtype=np.float32))


BAD_KWARGS = [
    ({"reward": "accuracy"}, "unknown reward 'accuracy': choose one of acc, acc_flops, acc_latency, lagrangian"),
    ({"flops_target": 1.5}, "must be a fraction in"),
    ({"min_ratio": -0.1}, "min_ratio must be in"),
    ({"max_ratio": 1.0}, "max_ratio must be in"),
    ({"min_ratio": 0.6, "max_ratio": 0.5}, "must not exceed"),
    ({"action_mode": "channels"}, "unknown action_mode 'channels'"),
    ({"importance": "l7"}, "l7"),
    ({"finetune_steps": -3}, "finetune_steps"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_KWARGS)
def test_bad_kwargs_fail_before_any_task_is_built(monkeypatch, kwargs, message):
    monkeypatch.setattr(env_module, "_build_task", lambda: pytest.fail("built a task before validating kwargs"))
    with pytest.raises(UserInputError, match=message.replace("(", r"\(")):
        gymnasium.make(ENV_ID, **kwargs)


def test_unreachable_target_is_a_user_error(make_env):
    with pytest.raises(UserInputError, match="cannot be met even at max pruning"):
        make_env(flops_target=0.01)


def test_package_exports_the_registry():
    assert ENV_ID in gymnasium.registry
    assert set(env_pkg.reward_names()) == {"acc", "acc_flops", "acc_latency", "lagrangian"}


class _ChannelLatency:
    """A stand-in latency model: ms grows with the square of the channels kept in the last unit."""

    def __init__(self, units):
        self.last = units[-1].name

    def predict(self, kept):
        return 1.0 + 0.01 * kept[self.last] ** 2


def _no_eval(policy):
    return EvalResult(policy, accuracy=50.0, dense_accuracy=60.0, acc_drop=10.0, flops_ratio=0.5, params_ratio=0.5,
                      macs=1.0, params=1.0)


def test_latency_target_is_walled_through_the_attached_latency_model(make_env, tiny_task, monkeypatch):
    engine = get_engine(tiny_task)
    model = _ChannelLatency(engine.units)
    monkeypatch.setattr(engine, "latency_model", model)
    e = make_env(constraints=Constraints(latency_target=LatencyTarget(0.3)), evaluator=_no_eval)
    assert [t.name for t in e.wall.targets] == ["latency"]
    dense_ms = model.predict({u.name: u.channels for u in engine.units})
    for actions in ([0.0] * e.num_units, [1.0] * e.num_units):
        _, _, info = _episode(e, actions)
        kept = engine.kept_channels(engine.plan(info["policy"], e.settings))
        assert model.predict(kept) <= 0.3 * dense_ms
    # only the last unit matters to this model: a zero-action episode prunes nothing else
    _, _, info = _episode(e, [0.0] * e.num_units)
    assert [r > 0 for r in info["policy"].ratios.values()] == [False] * (e.num_units - 1) + [True]


def test_latency_ratio_target_without_a_model_uses_the_flops_ratio(make_env):
    e = make_env(constraints=Constraints(latency_target=LatencyTarget(0.4)), evaluator=_no_eval)
    assert [(t.name, round(t.limit, 3)) for t in e.wall.targets] == [("flops", 0.4)]
    _, _, info = _episode(e, [1.0] * e.num_units)
    assert 0.97 * 0.4 <= e.wall.flops_ratio(info["policy"].ratios) <= 0.4
