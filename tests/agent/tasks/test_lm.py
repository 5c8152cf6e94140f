"""The built-in LM task: byte windows of the stdlib split by file, a tiny GQA LLaMA, perplexity with a direction."""

from __future__ import annotations

import math

import pytest
import torch

from agent.constraints import Constraints
from agent.evaluation import EvalResult
from agent.policy import Policy
from agent.search.results import result_to_row, row_to_result
from agent.tasks.metrics import METRICS, perplexity

pytest.importorskip("transformers")

from agent.tasks.lm import pystdlib, stdlib_files  # noqa: E402


@pytest.fixture(scope="module")
def small_lm_data():
    return pystdlib(windows={"train": 512, "val": 64, "test": 64})


def test_pystdlib_is_seeded_next_byte_windows_split_by_file(small_lm_data):
    d = small_lm_data
    assert d.metric == "perplexity" and d.num_classes == 256 and d.input_shape == (64,)
    x, y = d.train.tensors
    assert x.shape == (512, 64) and x.dtype == torch.long and 0 <= int(x.min()) and int(x.max()) < 256
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one byte
    again = pystdlib(windows={"train": 512, "val": 64, "test": 64})
    assert torch.equal(again.val.tensors[0], d.val.tensors[0])
    other = pystdlib(seed=1, windows={"train": 512, "val": 64, "test": 64})
    assert not torch.equal(other.val.tensors[0], d.val.tensors[0])
    val_text = bytes(d.val.tensors[0][0].tolist())
    assert all(val_text not in bytes(w.tolist()) for w in d.train.tensors[0][:64])
    assert len(stdlib_files()) > 100


def test_llama_tiny_has_gqa_and_learns_far_below_uniform_perplexity(small_lm_data):
    from agent.tasks.task import TaskSpec, train_dense

    torch.set_num_threads(1)
    task = train_dense(TaskSpec("llama-tiny", "pystdlib"), epochs=2, data=small_lm_data)
    attn = task.model.lm.model.layers[0].self_attn
    assert attn.num_key_value_groups == 2 and task.model.lm.config.num_key_value_heads == 2
    assert sum(p.numel() for p in task.model.parameters()) < 1_000_000
    assert task.meta["optimizer"] == "adamw" and task.meta["metric"] == "perplexity"
    uniform = perplexity(_Uniform(), small_lm_data.val)
    assert uniform == pytest.approx(256.0, rel=1e-4)
    assert task.meta["val_accuracy"] < uniform / 3


class _Uniform(torch.nn.Module):
    def forward(self, ids):
        return torch.zeros(*ids.shape, 256)


def test_perplexity_drop_is_an_increase_and_limits_it():
    ppl = METRICS["perplexity"]
    assert ppl.drop(dense=5.0, value=6.5) == 1.5 and ppl.drop(dense=5.0, value=4.0) == -1.0
    worse = EvalResult(Policy({}), accuracy=6.5, dense_accuracy=5.0, acc_drop=1.5, flops_ratio=0.5, params_ratio=0.5,
                       metric="perplexity")
    better = EvalResult(Policy({}), accuracy=5.5, dense_accuracy=5.0, acc_drop=0.5, metric="perplexity")
    assert better.quality > worse.quality
    issues = Constraints(max_acc_drop=1.0).check_result(worse)
    assert issues == ["perplexity drop 1.50 > 1.00"]
    assert not Constraints(max_acc_drop=2.0).check_result(worse)
    assert ppl.error(1.0) == 0.0 and 0 < ppl.error(4.0) < ppl.error(8.0) < 1 and ppl.error(math.inf) == 1.0


def test_results_csv_keeps_the_metric_and_old_rows_read_as_accuracy():
    r = EvalResult(Policy({"a": 0.5}), accuracy=7.0, dense_accuracy=5.0, acc_drop=2.0, metric="perplexity")
    row = result_to_row(0, "uniform", r)
    assert row_to_result(row).metric == "perplexity"
    del row["metric"]
    assert row_to_result(row).metric == "accuracy"
