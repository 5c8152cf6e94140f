"""Every state an evaluation is logged in is a :class:`Status`; ``results.csv`` keeps its plain text."""

import csv
import json

import pytest

from agent.evaluation import EvalResult, Status
from agent.policy import Policy
from agent.search.results import ResultLog


@pytest.mark.parametrize("status", list(Status))
def test_each_status_is_written_as_text_and_read_back_as_a_member(status, tmp_path):
    log = ResultLog.open(tmp_path / "results.csv", resume=False)
    log.append(0, "optuna", EvalResult(Policy({"a": 0.5}), status=status, reason="x"))
    with open(tmp_path / "results.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["status"] == status.value
    (_, back), = ResultLog.open(tmp_path / "results.csv", resume=True).results()
    assert back.status is status
    assert json.loads(json.dumps(back.to_dict()))["status"] == status.value


def test_a_plain_string_becomes_a_member_and_an_unknown_one_is_refused():
    assert EvalResult(Policy({"a": 0.5}), status="pruned").status is Status.PRUNED
    assert not EvalResult(Policy({"a": 0.5}), status="rejected").ok
    with pytest.raises(ValueError, match="'stopped'"):
        EvalResult(Policy({"a": 0.5}), status="stopped")
