"""Export a pruned model for deployment: TorchScript, ONNX (checked with onnxruntime), torch.export, weights.

Every exported file is loaded back and compared with the PyTorch model on random inputs of two batch sizes;
a difference above ``atol`` raises :class:`ExportCheckError` (the export is not silently shipped).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import user_error
from ..outputs import logits_of
from ..storage import atomic_torch_save, atomic_write_bytes, atomic_write_json

__all__ = ["EXPORT_FORMATS", "DEFAULT_FORMATS", "ExportCheckError", "ExportReport", "export_model", "check_formats",
           "FILE_NAMES"]

EXPORT_FORMATS = ("torchscript", "onnx", "export", "state", "hf")
"""``torchscript`` (torch.jit), ``onnx``, ``export`` (torch.export ``.pt2``), ``state`` (tensors-only state dict),
``hf`` (a Hugging Face model's ``save_pretrained`` directory, see :mod:`agent.deploy.hf_save`)."""
DEFAULT_FORMATS = ("torchscript", "onnx", "state")
"""Formats written when none are named."""
FILE_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "onnx_data": "model.onnx.data",
              "export": "model.pt2", "state": "state_dict.pt", "hf": "hf"}
"""File name of each format in the output directory (``onnx_data``: the ONNX weights, beside ``model.onnx``)."""


class ExportCheckError(RuntimeError):
    """An exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class ExportReport:
    """What was written and how well each file reproduces the PyTorch model."""

    files: dict[str, str] = field(default_factory=dict)
    """Format -> file path."""
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    """Format -> largest absolute output difference from PyTorch over the check inputs."""
    notes: dict[str, str] = field(default_factory=dict)
    """Format -> how it was produced (e.g. which ONNX exporter)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"files": self.files, "max_abs_diff": self.max_abs_diff, "notes": self.notes}


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """Validate format names (before any work).

    Raises:
        UserInputError: An unknown or empty format list.
    """
    names = tuple(f.strip() for f in formats if f.strip())
    unknown = [f for f in names if f not in EXPORT_FORMATS]
    if unknown or not names:
        raise user_error("unknown export format(s):", unknown or list(formats),
                         f"choose from {', '.join(EXPORT_FORMATS)}, e.g. --formats torchscript,onnx")
    return tuple(dict.fromkeys(names))


def _compare(run: Callable[[torch.Tensor], np.ndarray], model: nn.Module, inputs: Sequence[torch.Tensor],
             what: str, atol: float) -> float:
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = logits_of(model(x)).numpy()
            got = np.asarray(run(x))
            if got.shape != ref.shape:
                raise ExportCheckError(f"{what}: output shape {got.shape} differs from PyTorch's {ref.shape}")
            diff = float(np.abs(got - ref).max()) if ref.size else 0.0
            if not math.isfinite(diff):
                raise ExportCheckError(f"{what}: non-finite outputs")
            worst = max(worst, diff)
    if worst > atol:
        raise ExportCheckError(f"{what}: outputs differ from PyTorch by {worst:.3g} > {atol:g} on random inputs; "
                               "the exported file is not faithful (try another --opset or format)")
    return worst


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Callable[[torch.Tensor], np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)  # checked below on other inputs
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        atomic_write_bytes(path, buf.getvalue())
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x).detach().numpy()


def _torch_export(model: nn.Module, example: torch.Tensor, path: Path) -> Callable[[torch.Tensor], np.ndarray]:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example.expand(2, *example.shape[1:]).clone(),),
                                  dynamic_shapes=({0: batch},))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    atomic_write_bytes(path, buf.getvalue())
    loaded = torch.export.load(str(path)).module()
    return lambda x: loaded(x).detach().numpy()


def _hf(model: nn.Module, path: Path) -> Callable[[torch.Tensor], np.ndarray]:
    from ..tasks.hub_sources import CausalLMLogits
    from .hf_save import load_pruned, save_pruned

    save_pruned(model, path)
    loaded = load_pruned(path)
    runner = CausalLMLogits(loaded) if isinstance(model, CausalLMLogits) else loaded
    return lambda x: logits_of(runner(x)).detach().numpy()


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> tuple[Callable, str]:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise user_error("ONNX export needs the onnx and onnxruntime packages, missing for", "onnx",
                         "pip install onnx onnxruntime onnxscript (or drop onnx from --formats)") from None
    # dynamo exporter first (a dynamic batch dimension), the TorchScript-based one as fallback
    sample = example.expand(2, *example.shape[1:]).clone()
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if opset is not None:
        kwargs["opset_version"] = opset
    how = "dynamo"
    data_name = FILE_NAMES["onnx_data"]
    # export into a private temp folder, re-save the weights under their final name (the name is baked into the
    # .onnx file), then move both into place: the folder travels, and no temp name leaks into the graph
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=path.parent) as tmp_dir, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        raw = Path(tmp_dir) / "raw" / path.name
        raw.parent.mkdir()
        try:
            torch.onnx.export(model, (sample,), str(raw), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), **kwargs)
        except Exception:  # noqa: BLE001 - any dynamo failure: try the classic exporter
            how = "torchscript-based"
            torch.onnx.export(model, (sample,), str(raw), dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kwargs)
        proto = onnx.load(str(raw))  # external data (if any) read in
        staged = Path(tmp_dir) / path.name
        onnx.save_model(proto, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name)  # tensors under 1 KiB (shapes, scalars) stay inline
        (path.parent / data_name).unlink(missing_ok=True)  # no stale weights of an earlier export
        for name in (data_name, path.name):  # weights first: a visible model.onnx always finds its data
            if not (Path(tmp_dir) / name).exists():  # a model without a tensor over 1 KiB has no data file
                continue
            with open(Path(tmp_dir) / name, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(Path(tmp_dir) / name, path.parent / name)
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x.numpy()})[0]), how


def export_model(model: nn.Module, *, example_input: torch.Tensor, out_dir: str | Path,
                 formats: Iterable[str] = DEFAULT_FORMATS, atol: float = 1e-4, opset: int | None = None,
                 check_batches: Sequence[int] = (1, 3), seed: int = 0,
                 extra_files: dict[str, Any] | None = None) -> ExportReport:
    """Write ``model`` in each format to ``out_dir`` and check each file against PyTorch.

    Example:
        >>> import tempfile, torch
        >>> from agent import export_model
        >>> report = export_model(torch.nn.Linear(4, 2).eval(), example_input=torch.randn(1, 4), out_dir=tempfile.mkdtemp(),
        ...                       formats=("torchscript", "state"))
        >>> sorted(report.files), report.max_abs_diff["torchscript"] < 1e-4
        (['state', 'torchscript'], True)

    Args:
        model: The (pruned) model; exported in eval mode on the CPU.
        example_input: One input of the model's per-sample shape (batch 1).
        out_dir: Output directory.
        formats: Names from :data:`EXPORT_FORMATS`.
        atol: Largest tolerated absolute output difference.
        opset: ONNX opset (default: the exporter's).
        check_batches: Batch sizes of the random check inputs.
        seed: Seed of the check inputs.
        extra_files: Name -> JSON-ready object written beside the model (e.g. the policy).

    Returns:
        The files and their measured differences (also written to ``export.json``).

    Raises:
        ExportCheckError: A file's outputs differ from PyTorch's by more than ``atol``.
    """
    names = check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    example = example_input[:1].cpu()
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randn((b, *example.shape[1:]), generator=gen) for b in check_batches]
    report = ExportReport()
    for fmt in names:
        path = out / FILE_NAMES[fmt]
        if fmt == "state":
            atomic_torch_save(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
            report.files[fmt] = str(path)
            continue
        if fmt == "torchscript":
            run, how = _torchscript(model, example, path), "torch.jit.trace"
        elif fmt == "export":
            run, how = _torch_export(model, example, path), "torch.export (dynamic batch)"
        elif fmt == "hf":
            run, how = _hf(model, path), "save_pretrained; reload with agent.deploy.hf_save.load_pruned(path)"
        else:
            run, how = _onnx(model, example, path, opset)
            how = f"torch.onnx.export ({how}), checked with onnxruntime"
        report.files[fmt] = str(path)
        if fmt == "onnx" and (out / FILE_NAMES["onnx_data"]).exists():
            report.files["onnx_data"] = str(out / FILE_NAMES["onnx_data"])
        report.notes[fmt] = how
        report.max_abs_diff[fmt] = _compare(run, model, inputs, f"{fmt} export {path.name}", atol)
    for name, obj in (extra_files or {}).items():
        atomic_write_json(out / name, obj)
        report.files[name] = str(out / name)
    atomic_write_json(out / "export.json", {**report.to_dict(), "input_shape": list(example.shape[1:]),
                                            "atol": atol, "torch": torch.__version__})
    return report
