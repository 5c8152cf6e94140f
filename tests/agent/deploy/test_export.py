"""Export: ONNX round trip within 1e-4 (1-D and 2-D models), standalone TorchScript, loud failures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agent.cli import main
from agent.deploy.export import ExportCheckError, check_formats, export_model
from agent.errors import UserInputError
from agent.evaluation import EvalSettings, get_engine
from agent.policy import Policy
from agent.pruning.graph import PruningGraph
from agent.tasks.models import build_model

from ..deploy_fixtures import tiny_search_dir


def _onnx_outputs(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def _pruned_lenet():
    torch.manual_seed(0)
    dense = build_model("lenet", (1, 8, 8), 10)
    graph = PruningGraph(dense, torch.zeros(1, 1, 8, 8))
    scores = {u.name: torch.rand(u.channels) for u in graph.units}
    return graph.apply(graph.select(scores, dict.fromkeys(graph.unit_names(), 0.4)))


def test_onnx_round_trip_1d_pruned_cnn(tiny_task, tmp_path):
    engine = get_engine(tiny_task)
    model = engine.build(Policy.uniform(engine.graph.unit_names(), 0.3), EvalSettings())
    rep = export_model(model, example_input=tiny_task.example_input(), out_dir=tmp_path, formats=["onnx"])
    assert set(rep.files) == {"onnx", "onnx_data"} and rep.max_abs_diff["onnx"] <= 1e-4
    x = torch.randn(7, *tiny_task.input_shape)  # a batch size the check did not use: the batch axis is dynamic
    with torch.no_grad():
        np.testing.assert_allclose(_onnx_outputs(tmp_path / "model.onnx", x), model(x).numpy(), atol=1e-4, rtol=0)


def test_pruned_vit_tiny_exports_to_onnx_and_matches_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    dense = build_model("vit-tiny", (1, 32, 32), 10)
    graph = PruningGraph(dense, torch.zeros(1, 1, 32, 32))
    assert graph.unit_names()  # the MLP widths of the encoder layers at least
    scores = {u.name: torch.rand(u.channels) for u in graph.units}
    model = graph.apply(graph.select(scores, dict.fromkeys(graph.unit_names(), 0.5))).eval()
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())
    rep = export_model(model, example_input=torch.zeros(1, 1, 32, 32), out_dir=tmp_path, formats=["onnx"])
    assert rep.max_abs_diff["onnx"] <= 1e-4
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(_onnx_outputs(tmp_path / "model.onnx", x), model(x).numpy(), atol=1e-4, rtol=0)


def test_onnx_export_travels_to_a_copied_folder(tmp_path):
    """The weights file has its final name, is listed in export.json, and loads from a copy of the folder."""
    import shutil

    import onnx

    model = _pruned_lenet()
    export_model(model, example_input=torch.randn(1, 1, 8, 8), out_dir=tmp_path / "exp", formats=["onnx"])
    names = sorted(p.name for p in (tmp_path / "exp").iterdir())
    assert names == ["export.json", "model.onnx", "model.onnx.data"], names  # no hidden temp files left
    manifest = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert {Path(f).name for f in manifest["files"].values()} == {"model.onnx", "model.onnx.data"}
    locations = {e.value for t in onnx.load(str(tmp_path / "exp" / "model.onnx"), load_external_data=False)
                 .graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}
    shutil.copytree(tmp_path / "exp", tmp_path / "elsewhere" / "copy")
    shutil.rmtree(tmp_path / "exp")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_onnx_outputs(tmp_path / "elsewhere" / "copy" / "model.onnx", x), ref, atol=1e-4,
                               rtol=0)


def test_all_formats_2d_model(tmp_path):
    model = _pruned_lenet()
    assert model.features[3].out_channels < 16, "the model really is pruned"
    rep = export_model(model, example_input=torch.randn(1, 1, 8, 8), out_dir=tmp_path,
                       formats=["torchscript", "onnx", "export", "state"], extra_files={"policy.json": {"r": 0.4}})
    for name in ("model.torchscript.pt", "model.onnx", "model.pt2", "state_dict.pt", "policy.json", "export.json"):
        assert (tmp_path / name).is_file(), name
    assert all(d <= 1e-4 for d in rep.max_abs_diff.values()) and set(rep.max_abs_diff) == {"torchscript", "onnx",
                                                                                           "export"}
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        np.testing.assert_allclose(_onnx_outputs(tmp_path / "model.onnx", x), ref.numpy(), atol=1e-4, rtol=0)
        assert torch.allclose(torch.export.load(str(tmp_path / "model.pt2")).module()(x), ref, atol=1e-5)
    state = torch.load(tmp_path / "state_dict.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert manifest["input_shape"] == [1, 8, 8] and manifest["atol"] == 1e-4


def test_torchscript_loads_without_project_code(tiny_task, tmp_path):
    engine = get_engine(tiny_task)
    model = engine.build(Policy.uniform(engine.graph.unit_names(), 0.5), EvalSettings())
    export_model(model, example_input=tiny_task.example_input(), out_dir=tmp_path, formats=["torchscript"])
    x = torch.randn(4, *tiny_task.input_shape)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    # a fresh interpreter (-I: no cwd / PYTHONPATH on sys.path) where importing the project is blocked outright
    code = ("import sys\nsys.modules['agent'] = None  # any `import agent` now raises ImportError\nimport torch\n"
            f"m = torch.jit.load({str(tmp_path / 'model.torchscript.pt')!r})\n"
            f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
            "d = (m(io['x']) - io['y']).abs().max().item()\n"
            "print(d)\nsys.exit(0 if d <= 1e-5 else 1)\n")
    r = subprocess.run([sys.executable, "-I", "-W", "ignore", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


class _Drifting(nn.Module):
    """A model whose eager output changes every call: a trace / export freezes it, so outputs disagree."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x) * float(self.calls)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_unfaithful_export_fails_loudly(fmt, tmp_path):
    with pytest.raises(ExportCheckError, match="differ"):
        export_model(_Drifting(), example_input=torch.randn(1, 4), out_dir=tmp_path, formats=[fmt])


def test_bad_format_is_a_user_error():
    with pytest.raises(UserInputError, match="tflite"):
        check_formats(["onnx", "tflite"])
    assert check_formats(["onnx", " onnx", "state"]) == ("onnx", "state")


def test_export_cli_on_a_search_output(tiny_checkpoint, tmp_path, capsys):
    run = tiny_search_dir(tiny_checkpoint)
    out = tmp_path / "exp"
    assert main(["export", "--pruned", str(run / "pruned_model.pt"), "--out", str(out)]) == 0
    for name in ("model.torchscript.pt", "model.onnx", "state_dict.pt", "policy.json", "export.json"):
        assert (out / name).is_file(), name
    policy = json.loads((out / "policy.json").read_text())
    best = json.loads((run / "best_policy.json").read_text())
    assert policy["policy"] == best["policy"] and policy["input_shape"] == [1, 40]
    assert max(json.loads((out / "export.json").read_text())["max_abs_diff"].values()) <= 1e-4
    capsys.readouterr()
    assert main(["export", "--pruned", str(run / "pruned_model.pt"), "--formats", "onnx,coreml",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "coreml" in capsys.readouterr().err and not (tmp_path / "bad").exists()
