import json
import subprocess
import sys

import optuna
import pytest

from agent.errors import UserInputError
from agent.policy import Policy
from search_spaces import (
    PRESETS,
    GroupRule,
    SearchSpace,
    from_ray_config,
    load_space,
    optuna_distributions,
    suggest_params,
    to_ray_keys,
    to_ray_tune,
)

from ..conftest import REPO

CNN1D = ["stem.0", "down1.0", "block1.conv_a.0", "down2.0", "block2.conv_a.0"]
RESNET20 = ["conv1", "layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1", "layer2.0.conv2",
            "layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1", "layer3.0.conv2", "layer3.1.conv1", "layer3.2.conv1"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("make,needle", [
    (lambda: SearchSpace(low=0.6, high=0.2), "low > high: [0.6, 0.2]"),
    (lambda: SearchSpace(high=1.0), "must be < 1"),
    (lambda: SearchSpace(low=-0.1), "must be >= 0"),
    (lambda: SearchSpace(units={"stem.0": [0.0, 1.2]}), "'stem.0' high must be < 1"),
    (lambda: SearchSpace(units={"stem.0": [0.5, 0.1]}), "swap them"),
    (lambda: SearchSpace(units={"stem.0": [0.1, 0.2, 0.3]}), "[low, high]"),
    (lambda: SearchSpace(mode="threshold", high=1.5), "<= 1 in threshold mode"),
    (lambda: SearchSpace(mode="spiral"), "unknown mode 'spiral'"),
    (lambda: SearchSpace(importance=("l2", "l7")), "unknown importance 'l7'"),
    (lambda: SearchSpace(finetune_steps=(100, -5)), "finetune_steps"),
    (lambda: SearchSpace(finetune_lr=(0.0,)), "finetune_lr"),
    (lambda: SearchSpace(step=2.0), "step must be in (0, 1)"),
    (lambda: SearchSpace(groups=("layer(",)), "not a valid regular expression"),
    (lambda: SearchSpace(groups=({"depth": 0},)), "depth must be a positive integer"),
    (lambda: SearchSpace.from_dict({"hgih": 0.5}), "unknown key(s) ['hgih']"),
    (lambda: load_space("spiral"), "unknown search space 'spiral'"),
    (lambda: load_space("/nonexistent/space.yaml"), "not found"),
    (lambda: SearchSpace(units={"nosuchlayer": [0, 0.5]}).bind(unit_names=CNN1D), "nosuchlayer"),
    (lambda: SearchSpace(low=0.95).bind(unit_names=CNN1D, max_ratio=0.9), "low bound above high bound"),
    (lambda: SearchSpace(groups=({"pattern": r"^[a-z]+?(\d)", "name": r"s\1"},),
                         units={"down1.0": [0, 0.2], "block1.conv_a.0": [0.5, 0.8]}).bind(unit_names=CNN1D),
     "do not overlap"),
])
def test_invalid_definitions_are_user_errors_naming_value_and_fix(make, needle):
    with pytest.raises(UserInputError) as info:
        make()
    msg = str(info.value)
    assert needle in msg, msg
    assert ":" in msg and "\n" not in msg


@pytest.mark.parametrize("text,suffix,needle", [
    ("mode: ratio\nhigh: [0.5\n", ".yaml", "not valid YAML"),
    ('{"high": 0.5,}', ".json", "not valid JSON"),
    ("- 0.5\n- 0.6\n", ".yaml", "must hold a mapping"),
    ("preset: spiral\n", ".yml", "unknown preset 'spiral'"),
    ("high: 1.0\n", ".yaml", "must be < 1"),
])
def test_malformed_files_are_user_errors(tmp_path, text, suffix, needle):
    f = tmp_path / f"space{suffix}"
    f.write_text(text)
    with pytest.raises(UserInputError, match="search space") as info:
        load_space(str(f))
    assert needle in str(info.value)


def test_file_with_preset_overrides_and_round_trip(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("preset: grouped\nhigh: 0.7\nunits:\n  stem.0: 0.0\nimportance: [l1, l2]\nfinetune_steps: [0, 50]\n")
    space = load_space(str(f))
    assert space.name == "mine" and space.high == 0.7 and space.groups == PRESETS["grouped"].groups
    assert space.units == {"stem.0": (0.0, 0.0)}
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space
    bound = space.bind(unit_names=CNN1D)
    assert bound.fixed == {"stem.0": 0.0}
    assert bound.param_names() == ["ratio/stage1", "ratio/stage2", "importance", "finetune_steps"]
    assert all(d.high == 0.7 for d in bound.dimensions)


def test_optuna_rendering_has_stable_names_and_policies_within_bounds():
    space = SearchSpace(units={"down2.0": [0.2, 0.4]}, importance=("l1", "l2"))
    a = space.bind(unit_names=CNN1D, max_ratio=0.8)
    b = SearchSpace.from_dict(space.to_dict()).bind(unit_names=CNN1D, max_ratio=0.8)
    assert a.param_names() == b.param_names() == [f"ratio/{u}" for u in CNN1D] + ["importance"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        params = suggest_params(trial, a)
        assert list(params) == a.param_names() and set(trial.params) == set(params)
        policy = a.decode(params).policy
        assert policy.importance in ("l1", "l2")
        for u in CNN1D:
            lo, hi = (0.2, 0.4) if u == "down2.0" else (0.0, 0.8)
            assert lo <= policy.ratio(u) <= hi
        study.tell(trial, 0.0)
    assert set(optuna_distributions(a)) == set(a.param_names())


def test_enqueued_policy_comes_back_identical():
    bound = PRESETS["layerwise"].bind(unit_names=CNN1D)
    policy = Policy({u: 0.1 * i for i, u in enumerate(CNN1D)})
    study = optuna.create_study()
    study.enqueue_trial(bound.encode(policy))
    trial = study.ask()
    assert bound.decode(suggest_params(trial, bound)).policy.key() == policy.key()


def test_grouped_preset_reduces_dimensionality_and_shares_ratios():
    for names, dims in ((RESNET20, ["ratio/conv1", "ratio/stage1", "ratio/stage2", "ratio/stage3"]),
                        (CNN1D, ["ratio/stem.0", "ratio/stage1", "ratio/stage2"])):
        grouped, layerwise = PRESETS["grouped"].bind(unit_names=names), PRESETS["layerwise"].bind(unit_names=names)
        assert [d.name for d in grouped.dimensions] == dims
        assert len(grouped.dimensions) < len(layerwise.dimensions) == len(names)
        policy = grouped.decode({d: 0.1 * (i + 1) for i, d in enumerate(dims)}).policy
        stage2 = [u for u in names if u.startswith(("layer2", "down2", "block2"))]
        assert len({policy.ratio(u) for u in stage2}) == 1 and policy.ratio(stage2[0]) == pytest.approx(0.3)
    assert GroupRule.prefix(2).key("layer2.0.conv1") == "layer2.0"


def test_fine_tune_choices_become_overrides():
    bound = SearchSpace(finetune_steps=(0, 50), finetune_lr=(0.01,)).bind(unit_names=CNN1D)
    assert "finetune_steps" in bound.param_names() and "finetune_lr" not in bound.param_names()
    cand = bound.decode({**{f"ratio/{u}": 0.2 for u in CNN1D}, "finetune_steps": 50})
    assert cand.overrides == {"finetune_steps": 50, "finetune_lr": 0.01}


def test_threshold_preset_maps_importance_thresholds_to_ratios(tiny_task, fast_settings):
    from agent.evaluation import get_engine

    engine = get_engine(tiny_task)
    names = engine.graph.unit_names()
    bound = PRESETS["threshold"].bind(unit_names=names, max_ratio=0.8)
    assert all(d.name.startswith("threshold/") and (d.low, d.high) == (0.0, 1.0) for d in bound.dimensions)

    def to_policy(thresholds, importance):
        return engine.thresholds_to_policy(thresholds, importance=importance, settings=fast_settings)

    low = bound.decode({d.name: 0.05 for d in bound.dimensions}, thresholds_to_policy=to_policy).policy
    high = bound.decode({d.name: 0.6 for d in bound.dimensions}, thresholds_to_policy=to_policy).policy
    assert all(0.0 <= low.ratio(u) <= high.ratio(u) <= 0.8 for u in names)
    assert sum(high.ratios.values()) > sum(low.ratios.values())
    with pytest.raises(ValueError, match="thresholds_to_policy"):
        bound.decode({d.name: 0.5 for d in bound.dimensions})


def test_ray_tune_rendering_uses_the_same_names_made_tune_safe():
    from ray import tune

    bound = SearchSpace(groups=PRESETS["grouped"].groups, step=0.05, importance=("l1", "l2")).bind(unit_names=RESNET20)
    params = to_ray_tune(bound)
    assert all("/" not in k for k in params), "Tune flattens configs on '/'"
    assert list(from_ray_config(params)) == bound.param_names()
    assert isinstance(params["importance"], tune.search.sample.Categorical)
    for d in bound.dimensions:
        value = to_ray_keys({d.name: None}).popitem()[0]
        sample = params[value].sample()
        assert d.low <= sample <= d.high and abs(sample / 0.05 - round(sample / 0.05)) < 1e-6
    config = {name: dom.sample() for name, dom in params.items()}
    assert set(bound.decode(from_ray_config(config)).policy.ratios) == set(RESNET20)


def test_importing_search_spaces_does_not_import_ray_or_optuna():
    code = "import sys, search_spaces; print('ray' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr
