"""Named presets and loading a space from a preset name or a YAML / JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.errors import user_error

from .space import GroupRule, SearchSpace

__all__ = ["PRESETS", "STAGE_RULES", "load_space", "preset_names"]

STAGE_RULES = (GroupRule(r"^[A-Za-z_]+?(\d+)\.", r"stage\1"),)
"""Units whose first name component ends in the same stage number share a value: ``layer2.0.conv1`` and
``layer2.1.conv1`` (ResNets), ``down1.0`` and ``block1.conv_a.0`` (cnn1d) form ``stage2`` / ``stage1``;
a stem such as ``conv1`` or ``stem.0`` stays on its own."""

PRESETS: dict[str, SearchSpace] = {
    "layerwise": SearchSpace(name="layerwise", description="one pruning ratio per prunable unit"),
    "grouped": SearchSpace(name="grouped", groups=STAGE_RULES,
                           description="one pruning ratio per network stage (units of a stage share it)"),
    "threshold": SearchSpace(name="threshold", mode="threshold",
                             description="one threshold on normalised channel importance per unit"),
}
"""Built-in spaces selectable by name (``--search-space NAME``)."""


def preset_names() -> list[str]:
    """Names of the built-in spaces."""
    return list(PRESETS)


def _parse(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise user_error("search space file is not valid JSON:", str(path),
                             f"fix line {exc.lineno}: {exc.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise user_error("search space file is not valid YAML:", str(path), f"fix {where}{problem}") from None


def load_space(spec: str | os.PathLike[str] | SearchSpace) -> SearchSpace:
    """A space from a preset name, a ``.yaml`` / ``.yml`` / ``.json`` file, or an existing :class:`SearchSpace`.

    A file holds the :class:`SearchSpace` fields; ``preset: NAME`` starts from a preset and overrides the rest.

    Raises:
        UserInputError: Unknown preset, missing or malformed file, or an invalid definition.
    """
    if isinstance(spec, SearchSpace):
        return spec
    text = os.fspath(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text).expanduser()
    looks_like_file = path.suffix.lower() in (".json", ".yaml", ".yml") or os.sep in text
    if not path.is_file():
        if looks_like_file:
            raise user_error("search space file not found:", text, "pass an existing .yaml/.json file or a preset name")
        raise user_error("unknown search space", text,
                         f"choose a preset ({', '.join(PRESETS)}) or give a .yaml/.json file")
    data = _parse(path)
    if not isinstance(data, dict):
        raise user_error("search space file must hold a mapping of settings, got", type(data).__name__,
                         f"write e.g. 'preset: grouped' and 'high: 0.8' in {path}")
    base = None
    if "preset" in data:
        name = data.pop("preset")
        if name not in PRESETS:
            raise user_error("search space file names an unknown preset", name, f"choose one of {', '.join(PRESETS)}")
        base = PRESETS[name]
    data.setdefault("name", path.stem)
    return SearchSpace.from_dict(data, base=base)
