"""Model sources: where a model spec's model comes from (built-in, torchvision, a Python factory, ...).

A spec is ``NAME`` (a built-in model), ``PREFIX:NAME`` (a registered source, e.g. ``tv:resnet18``) or
``package.module:factory`` (any importable callable). A source is a small :class:`ModelSource` subclass registered
under its prefix with :func:`register_source`; it checks a name before anything expensive runs and builds the
untrained model. Optional libraries are imported inside ``check`` / ``build`` only.

Example:
    >>> from agent.tasks.sources import source_of
    >>> source, name = source_of("tv:resnet18")
    >>> source.prefix, name
    ('tv', 'resnet18')
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

from torch import nn

from ..errors import user_error

__all__ = ["MODEL_SOURCES", "ModelSource", "PythonFactory", "TorchvisionSource", "adapt_first_conv", "register_source",
           "source_names", "source_of", "unregister_source"]

MODEL_SOURCES: dict[str, ModelSource] = {}
"""Registry: spec prefix -> source (``tv`` for ``tv:resnet18``)."""

_S = TypeVar("_S", bound="type[ModelSource]")


class ModelSource(ABC):
    """One place models come from: checks names and builds untrained models."""

    prefix: ClassVar[str]
    """The spec prefix before ``:`` (``tv`` for ``tv:resnet18``)."""
    form: ClassVar[str]
    """How a spec of this source is written, for help and error texts (e.g. ``tv:<torchvision name>``)."""

    @abstractmethod
    def check(self, name: str) -> None:
        """Raise a :class:`~agent.errors.UserInputError` unless ``name`` can be built (cheap: nothing is built)."""

    @abstractmethod
    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The untrained model ``name`` for per-sample ``input_shape`` and ``num_classes`` outputs."""


def register_source(cls: _S) -> _S:
    """Class decorator: register an instance of ``cls`` under ``cls.prefix`` (a later one replaces it)."""
    MODEL_SOURCES[cls.prefix] = cls()
    return cls


def unregister_source(prefix: str) -> None:
    """Remove the source registered under ``prefix`` (for tests and plugins)."""
    MODEL_SOURCES.pop(prefix, None)


def source_names() -> list[str]:
    """Spec forms of the registered sources, then the Python-factory form."""
    return [*(s.form for s in MODEL_SOURCES.values()), PythonFactory.form]


def source_of(spec: str) -> tuple[ModelSource, str] | None:
    """The source of a prefixed or ``module:factory`` spec and the name it gets; None for a bare name.

    A registered prefix wins (``tv:resnet18``); any other ``a.b:c`` is a Python factory. Bare names are the
    built-in models' (:data:`agent.tasks.models.MODELS`).
    """
    prefix, sep, name = spec.partition(":")
    if not sep or not prefix or not name:
        return None
    if prefix in MODEL_SOURCES:
        return MODEL_SOURCES[prefix], name
    return PYTHON_FACTORY, spec


@register_source
class TorchvisionSource(ModelSource):
    """``tv:NAME``: a torchvision classification model, ``weights=None``, first conv adapted to the input."""

    prefix = "tv"
    form = "tv:<torchvision name>"

    def check(self, name: str) -> None:  # noqa: D102
        import torchvision

        if name not in torchvision.models.list_models(module=torchvision.models):
            raise user_error("unknown torchvision model", f"tv:{name}",
                             "use a classification model from torchvision.models.list_models(), e.g. tv:resnet18")

    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:  # noqa: D102
        import torchvision

        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        adapt_first_conv(model, input_shape[0])
        return model


class PythonFactory(ModelSource):
    """``package.module:factory``: any importable callable returning an ``nn.Module``.

    The factory gets ``num_classes`` and ``input_shape`` when its signature names them.
    """

    prefix = ""
    form = "package.module:factory"

    def check(self, name: str) -> None:  # noqa: D102
        self._factory(name)

    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:  # noqa: D102
        factory = self._factory(name)
        params = inspect.signature(factory).parameters
        kwargs: dict[str, object] = {}
        if "num_classes" in params:
            kwargs["num_classes"] = num_classes
        if "input_shape" in params:
            kwargs["input_shape"] = tuple(input_shape)
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise user_error("model factory did not return an nn.Module:", name, "return a torch.nn.Module")
        return model

    @staticmethod
    def _factory(spec: str) -> Callable[..., nn.Module]:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise user_error("cannot import the module of model", spec,
                             f"make {module_name!r} importable ({exc})") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise user_error("model factory not found", spec, f"define a callable {attr!r} in {module_name}")
        return factory


PYTHON_FACTORY = PythonFactory()
"""The fallback source of ``package.module:factory`` specs (not in the registry: it has no prefix)."""


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap a model's first ``Conv2d`` for one taking ``in_channels`` (e.g. grayscale input to an RGB model)."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            if mod.in_channels == in_channels:
                return
            new = nn.Conv2d(in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                            mod.dilation, mod.groups, mod.bias is not None)
            parent = model
            *path, last = name.split(".")
            for p in path:
                parent = getattr(parent, p)
            setattr(parent, last, new)
            return
