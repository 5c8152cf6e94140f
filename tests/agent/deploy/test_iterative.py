"""Iterative pruning: schedules, nested plans, one-shot equivalence, skipped fine-tunes, search wiring."""

import json

import numpy as np
import pytest
import torch

import agent.deploy.iterative as iterative
from agent.deploy.finetune import FinalTuneConfig
from agent.deploy.iterative import iterative_prune, polynomial_decay, schedule_fractions
from agent.evaluation import EvalSettings, get_engine
from agent.policy import Policy

from ..deploy_fixtures import tiny_search_dir


def test_linear_schedule_is_evenly_spaced():
    assert schedule_fractions(steps=4, schedule="linear") == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert schedule_fractions(steps=2, schedule="linear", initial=0.5) == pytest.approx([0.75, 1.0])


def test_poly_schedule_follows_tf_mot_polynomial_decay():
    # s_t = s_f + (s_i - s_f) (1 - t/T)^p with s_i = 0.2, s_f = 0.8, p = 3
    assert polynomial_decay(0, 5, initial=0.2, final=0.8, power=3) == pytest.approx(0.2)
    assert polynomial_decay(2, 5, initial=0.2, final=0.8, power=3) == pytest.approx(0.8 - 0.6 * 0.6**3)
    assert polynomial_decay(5, 5, initial=0.2, final=0.8, power=3) == pytest.approx(0.8)
    fr = schedule_fractions(steps=4, schedule="poly", power=3)
    assert fr == pytest.approx([1 - 0.75**3, 1 - 0.5**3, 1 - 0.25**3, 1.0])
    assert all(b > a for a, b in zip(fr, fr[1:], strict=False)), "monotone"
    assert fr[0] > 0.25, "poly prunes faster early than linear"


def test_without_finetune_iterative_equals_one_shot_bit_for_bit(tiny_task):
    """Pruning the step models further (dependency graph of the pruned model) lands on the one-shot model."""
    engine = get_engine(tiny_task)
    settings = EvalSettings(bn_recalibration_batches=0)
    policy = Policy({"stem.0": 0.25, "down1.0": 0.5, "block1.conv_a.0": 0.4, "down2.0": 0.6, "block2.conv_a.0": 0.3})
    out = iterative_prune(tiny_task, policy, steps=3, schedule="poly", finetune=FinalTuneConfig(epochs=0),
                          settings=settings)
    one_shot = engine.graph.apply(engine.plan(policy, settings))
    a, b = out.model.state_dict(), one_shot.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v.tolist() for k, v in out.plan.items()} == {k: v.tolist() for k, v in engine.plan(policy, settings).items()}
    totals = [s.channels_removed_total for s in out.steps]
    flops = [s.flops_ratio for s in out.steps]
    assert totals == sorted(totals) and totals[-1] == sum(len(v) for v in out.plan.values())
    assert flops == sorted(flops, reverse=True) and flops[0] < 1.0
    assert all(s.pruned and not s.finetuned for s in out.steps)


def test_a_step_that_prunes_nothing_skips_its_finetune(tiny_task, monkeypatch):
    """round_to=8 at ratio 0.1: kept counts snap to multiples of 8, so some steps change nothing."""
    calls = []
    real = iterative.finetune_model

    def counting(model, task, **kw):
        calls.append(kw.get("seed"))
        return real(model, task, **kw)

    monkeypatch.setattr(iterative, "finetune_model", counting)
    names = get_engine(tiny_task).graph.unit_names()
    policy = Policy.uniform(names, 0.1, round_to=8)
    seen = []
    out = iterative_prune(tiny_task, policy, steps=4, schedule="linear", finetune=FinalTuneConfig(epochs=0.02),
                          settings=EvalSettings(eval_limit=200), on_step=seen.append)
    assert seen == out.steps
    pruned = [s.pruned for s in out.steps]
    assert True in pruned and False in pruned, pruned
    for s in out.steps:
        if s.pruned:
            assert s.finetuned and s.finetune_steps > 0 and s.channels_removed > 0
        else:
            assert not s.finetuned and s.finetune_steps == 0 and s.channels_removed == 0
            assert "pruned nothing" in s.note and "skipped" in s.note
    assert len(calls) == sum(pruned), "fine-tune ran exactly once per step that pruned"
    kept = out.steps[-1].kept_channels
    assert all(k % 8 == 0 for k in kept.values())
    ref = get_engine(tiny_task).plan(policy, EvalSettings())
    assert {k: v.tolist() for k, v in out.plan.items()} == {k: v.tolist() for k, v in ref.items()}
    one_shot = get_engine(tiny_task).graph.apply(ref)
    assert [p.shape for p in out.model.parameters()] == [p.shape for p in one_shot.parameters()]


def test_each_step_prunes_the_previous_steps_finetuned_model(tiny_task, monkeypatch):
    """A stand-in fine-tune adds 1 to every weight: after two pruning steps the kept weights carry +2, so step 2
    pruned step 1's fine-tuned model instead of starting again from the dense weights."""

    def add_one(model, task, **kw):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        return {"steps": 1}

    monkeypatch.setattr(iterative, "finetune_model", add_one)
    engine = get_engine(tiny_task)
    names = engine.graph.unit_names()
    policy = Policy({names[1]: 0.5, names[-1]: 0.5})
    settings = EvalSettings(eval_limit=100)
    out = iterative_prune(tiny_task, policy, steps=2, schedule="linear", settings=settings)
    assert [s.pruned for s in out.steps] == [True, True] and [s.finetuned for s in out.steps] == [True, True]
    one_shot = engine.graph.apply(engine.plan(policy, settings))
    for (name, got), (_, ref) in zip(out.model.named_parameters(), one_shot.named_parameters(), strict=True):
        assert torch.allclose(got, ref + 2.0, atol=1e-5), name


def test_search_final_stage_runs_iteratively(tiny_checkpoint):
    out = tiny_search_dir(tiny_checkpoint)
    summary = json.loads((out / "summary.json").read_text())
    final = summary["final"]
    assert final["iterative_steps"] == 2 and final["schedule"] == "linear" and len(final["iterative"]) == 2
    assert final["iterative"][-1]["flops_ratio"] == pytest.approx(summary["best"]["flops_ratio"], abs=0.02)
    from agent.deploy.artifacts import read_pruned_artifact

    art = read_pruned_artifact(out / "pruned_model.pt")
    assert sum(p.numel() for p in art.model.parameters()) == pytest.approx(summary["best"]["params"])
    assert np.isfinite(final["test_accuracy"]) and final["test_accuracy"] > 50
