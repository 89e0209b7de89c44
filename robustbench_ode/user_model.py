"""Benchmark any model: a network given as code instead of as an odebench checkpoint.

Three sources (`ModelSource`, from the CLI's `--model-file`, `--torchscript`, `--model timm:NAME`):
a factory function in a .py file or an importable module (weights from `--weights`: .safetensors,
or a .pt/.pth state dict read with `torch.load(weights_only=True)`, see `weight_files`), a
TorchScript file, or a timm architecture (the optional `timm` extra; never downloads). The Python
API passes an `nn.Module`.

odebench's contract is [0, 1] pixels in, (N, classes) logits out, so ε stays in pixel units: a
network that expects normalised input is wrapped (`--normalize MEANS/STDS`, `pixel_model`). One
forward of two dataset images checks input shape and output before any attack runs. Every mistake
(a wrong factory path, a factory that raises, weights that do not fit, outputs that are not
logits) is one `UserError` line.

A loaded model is identified like a checkpoint, by SHA-256 (`meta`): `weights_sha256` of the
weights file (of the TorchScript file; of the state dict serialised as safetensors when there is
no file, which equals a checkpoint's hash for equal tensors) and `source_sha256` of the factory's
source file, which the results CSV carries as `checkpoint_sha` and `code_sha`.

A network that contains odebench's `ODEBlock` is wrapped as a `PixelODEModel`, whose
`with_solver` (`models.base.swap_solver`) gives gradient attacks through another solver and the
audit's surrogate check; NFE counts and the torchode backend find its blocks as they are.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .checkpoint import sha256_file
from .errors import UserError, existing_file, first_line, first_sentence, option
from .registry import MODELS

if TYPE_CHECKING:  # torch and the model machinery load when a model does: `from_options` checks without them
    import torch
    from torch import Tensor, nn

    from .data.base import DatasetInfo

FORMAT = "odebench-user-model/1"


def _where(exc: BaseException, source: Path | None) -> str:
    """' (at mynet.py:12)': the line of the user's file where `exc` was raised, innermost first;
    '' when the traceback never passes through `source`."""
    if source is None:
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == source.resolve()]
    return f" (at {source.name}:{frames[-1].lineno})" if frames else ""


@contextmanager
def _importable_beside(folder: Path) -> Iterator[None]:
    """Let a model file import the modules next to it while it runs."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def factory_spec(spec: str) -> tuple[str, str, Path | None]:
    """'path/to/file.py:NAME' -> (target, NAME, the existing file); 'package.module:NAME' -> (target,
    NAME, None); a malformed spec or a missing file is a UserError."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise UserError(f"{option('model_file')} '{spec}' must be FILE.py:FACTORY or package.module:FACTORY")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise UserError(f"{option('model_file')}: '{path}' does not exist")
        return target, name, path
    return target, name, None


def load_factory(spec: str) -> tuple[Callable[[], Any], Path | None]:
    """'path/to/file.py:NAME' or 'package.module:NAME' -> (the function, its source file)."""
    target, name, path = factory_spec(spec)
    if path is not None:
        module_name = "odebench_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise UserError(f"{option('model_file')}: '{path}' is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # dataclasses and pickling inside the file look themselves up here
        try:
            with _importable_beside(path.resolve().parent):
                module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise UserError(f"{option('model_file')}: running '{path}' failed: {first_line(exc)}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise UserError(f"{option('model_file')}: cannot import '{target}': {first_line(exc)}") from None
        path = Path(module.__file__) if getattr(module, "__file__", None) else None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UserError(f"{option('model_file')}: '{target}' has no function '{name}'")
    return factory, path


def load_torchscript(path: Path) -> nn.Module:
    """A scripted or traced model (`torch.jit.load`, on the CPU)."""
    import torch

    existing_file(path, "torchscript")
    try:
        with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript; asked for here, it is no news
            warnings.filterwarnings("ignore", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserError(f"{option('torchscript')} '{path}' is not a TorchScript file ({first_sentence(exc)})") from None


def load_timm(name: str, info: DatasetInfo) -> tuple[nn.Module, str]:
    """timm's architecture `name` for the dataset's channels and classes, randomly initialised
    (`pretrained=False`: nothing is downloaded); returns (net, timm version)."""
    try:
        import timm
    except ImportError:
        raise UserError(f"{option('model')} timm:NAME needs timm: pip install odebench[timm]") from None
    try:
        net = timm.create_model(name, pretrained=False, num_classes=info.num_classes, in_chans=info.in_channels)
    except Exception as exc:
        raise UserError(f"{option('model')} timm:{name}: timm cannot build it ({first_line(exc)})") from None
    return net, str(getattr(timm, "__version__", ""))


def module_meta(architecture: str, info: DatasetInfo, weights_sha256: str, source_sha256: str = "",
                **extra: Any) -> dict[str, Any]:
    """The metadata a `Target` needs (as a checkpoint's meta.json gives it) for a model given as code."""
    return {"format": FORMAT, "model": architecture, "dataset": info.name, "dataset_info": info.to_dict(),
            "method": "unknown", "weights_sha256": weights_sha256, "source_sha256": source_sha256, **extra}


def class_source_sha256(model: nn.Module) -> str:
    """SHA-256 of the file defining `model`'s class ('' where there is none, e.g. a notebook cell)."""
    try:
        path = inspect.getsourcefile(type(model))
    except TypeError:
        return ""
    return sha256_file(Path(path)) if path and Path(path).is_file() else ""


@dataclass(frozen=True)
class ModelSource:
    """A model named on the command line by code: exactly one of `factory` ('FILE.py:NAME' or
    'package.module:NAME', called with no arguments), `torchscript` (a file), `timm` (an
    architecture name) and `registered` (an odebench model, `odebench list models`, with its
    default options). `weights` load into a factory's, timm's or a registered network (for a
    registered one either an odebench checkpoint's tensors or its body's, e.g. a published
    layout such as yan2020_ode's); `normalize` ('MEANS/STDS' or 'dataset', see `parse_normalize`)
    wraps a network expecting normalised input (registered models normalise inside)."""

    factory: str | None = None
    torchscript: Path | None = None
    timm: str | None = None
    weights: Path | None = None
    normalize: str | None = None
    registered: str | None = None

    @classmethod
    def from_options(cls, model_file: str | None, weights: Path | None, torchscript: Path | None,
                     model: str | None, normalize: str | None) -> "ModelSource | None":
        """The CLI's flags -> a source, None when no model is given as code; bad combinations are UserErrors."""
        given = [option(name) for name, value in (("model_file", model_file), ("torchscript", torchscript),
                                                  ("model", model)) if value]
        if len(given) > 1:
            raise UserError(f"give one of {option('model_file')}, {option('torchscript')} and {option('model')}, "
                            f"not {' and '.join(given)}")
        if not given:
            for name, value in (("weights", weights), ("normalize", normalize)):
                if value:
                    raise UserError(f"{option(name)} applies to a model given by {option('model_file')}, "
                                    f"{option('torchscript')} or {option('model')}")
            return None
        if torchscript and weights:
            raise UserError(f"{option('weights')} does not apply to {option('torchscript')} (a TorchScript file "
                            "holds its weights)")
        timm_name = registered = None
        if model:
            kind, _, timm_name = model.partition(":")
            if kind != "timm":
                registered, timm_name = model, None
                if model not in MODELS.names():
                    raise UserError(f"{option('model')} '{model}': give timm:NAME (e.g. timm:resnet18) or a "
                                    f"registered model ({', '.join(MODELS.names())})")
                if normalize:
                    raise UserError(f"{option('normalize')} does not apply to {option('model')} {model}: "
                                    "registered models normalise inside")
            elif not timm_name:
                raise UserError(f"{option('model')} '{model}': give timm:NAME (e.g. timm:resnet18)")
        if model_file:
            factory_spec(model_file)
        return cls(model_file, existing_file(torchscript, "torchscript") if torchscript else None, timm_name,
                   existing_file(weights, "weights") if weights else None, normalize, registered)

    @property
    def label(self) -> str:
        """How tables name the model: file stem (or module) and factory, the TorchScript file's stem, timm:NAME."""
        if self.factory:
            target, _, name = self.factory.rpartition(":")
            stem = Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]
            return f"{stem}:{name}"
        if self.registered:
            return self.registered
        return self.torchscript.stem if self.torchscript else f"timm:{self.timm}"

    def build(self, info: DatasetInfo) -> tuple[nn.Module, Path | None, dict[str, Any]]:
        """The network with its weights loaded, its source file (for a factory) and extra metadata."""
        source: Path | None = None
        extra: dict[str, Any] = {}
        from torch import nn

        from .weight_files import load_registered_weights, load_weights, read_weights

        if self.factory:
            factory, source = load_factory(self.factory)
            try:
                if source is not None:
                    with _importable_beside(source.resolve().parent):
                        net = factory()
                else:
                    net = factory()
            except Exception as exc:
                raise UserError(f"{option('model_file')}: {self.factory}() raised {first_line(exc)}{_where(exc, source)}") from None
            if not isinstance(net, nn.Module):
                raise UserError(f"{option('model_file')}: {self.factory}() returned a {type(net).__name__}, not a torch.nn.Module")
        elif self.torchscript:
            net = load_torchscript(self.torchscript)
        elif self.registered:
            net = MODELS.get(self.registered).build(info)
            if self.weights:
                load_registered_weights(net, self.weights, read_weights(self.weights))
            return net, source, extra
        else:
            net, extra["timm_version"] = load_timm(str(self.timm), info)
        if self.weights:
            load_weights(net, self.weights)
        return net, source, extra

    def load(self, info: DatasetInfo, sample: Tensor, device: torch.device) -> tuple[nn.Module, dict[str, Any], Path]:
        """Build, load the weights, wrap for [0, 1] pixels and check against `sample` (dataset images);
        returns (model in eval mode on `device`, meta, the path the CSV's checkpoint column names)."""
        from .pixel_model import check_logits, parse_normalize, wrap
        from .weight_files import state_sha256

        net, source, extra = self.build(info)
        normalize = parse_normalize(self.normalize, info) if self.normalize else None
        net.eval()
        model = (net if self.registered else wrap(net, normalize, sample)).to(device).eval()
        check_logits(model, info, sample.to(device), self.label)
        weights = self.weights or self.torchscript
        meta = module_meta(
            self.factory or self.registered or ("torchscript" if self.torchscript else f"timm:{self.timm}"), info,
            sha256_file(weights) if weights else state_sha256(net), sha256_file(source) if source else "",
            name=self.label, weights=str(weights) if weights else "", source=str(source) if source else "",
            normalize={"mean": list(normalize[0]), "std": list(normalize[1])} if normalize else None, **extra,
        )
        return model, meta, Path(weights or source or self.label)
