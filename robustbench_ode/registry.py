"""Name -> builder registries for models, attacks and datasets (timm's `register_model` idea).

Registering is one decorator on a builder function or class::

    @MODELS.register("resnet56", "He et al. CIFAR ResNet, 3x9 basic blocks, step size h")
    def resnet56(info: DatasetInfo, h: float = 1.0) -> nn.Module: ...

The keyword-only / defaulted parameters of the builder are its *options*: `odebench list` shows
them and `--model-arg key=value` strings are coerced to their annotated types.

Plugins (docs/plugins.md): a distribution names a module under the entry-point group
`odebench.models`, `odebench.attacks`, `odebench.datasets` or `odebench.methods`; importing it runs
the same decorators. Every plugin is imported once, after all built-ins, when the first project
registry loads; one that fails is skipped whole with one `PluginWarning`.
"""
from __future__ import annotations

import importlib
import inspect
import typing
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator

from .errors import UserError

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One accepted option of a registered builder."""

    name: str
    type: type
    default: Any

    def parse(self, raw: Any, owner: str) -> Any:
        """Coerce a string (or already typed value) to this option's type, or raise UserError."""
        if not isinstance(raw, str):
            return raw
        text = raw.strip()
        try:
            if self.type is bool:
                if text.lower() in _BOOL_TRUE:
                    return True
                if text.lower() in _BOOL_FALSE:
                    return False
                raise ValueError
            if self.type is float:
                return parse_number(text)
            if self.type is int:
                return int(text)
            if self.type is str:
                return text
        except (ValueError, ZeroDivisionError):
            pass
        else:
            if self.type not in (bool, float, int, str):
                return text
        raise UserError(f"{owner}: option '{self.name}' expects {self.type.__name__}, got {raw!r}")


def parse_number(text: str) -> float:
    """Parse '0.3', '1e-3' or a fraction like '8/255' into a float."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


@dataclass
class Entry:
    """A registered builder with its description and options."""

    name: str
    builder: Callable[..., Any]
    description: str
    options: dict[str, Option] = field(default_factory=dict)
    kind: str = ""
    plugin: str = ""  # the distribution that registered it; "" for a built-in

    def parse_options(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate option names and coerce values; unknown options are a UserError."""
        out = {}
        for key, value in raw.items():
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise UserError(f"{self.kind} '{self.name}' has no option '{key}' (accepted: {known})")
            out[key] = self.options[key].parse(value, f"{self.kind} '{self.name}'")
        return out

    def resolve(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Every option with its value: the defaults overridden by the parsed `raw` ones."""
        return {name: opt.default for name, opt in self.options.items()} | self.parse_options(raw)

    def build(self, *args: Any, **options: Any) -> Any:
        """Call the builder with parsed options."""
        return self.builder(*args, **self.parse_options(options))

    def options_text(self, hidden: tuple[str, ...] = ()) -> str:
        """Options as 'name=default' for listings, leaving out `hidden` (plumbing, not user options)."""
        return ", ".join(f"{o.name}={o.default}" for o in self.options.values() if o.name not in hidden)


def options_of(builder: Callable[..., Any]) -> dict[str, Option]:
    """The keyword options of a builder (or class) with their types and defaults, from its signature."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # pragma: no cover - unresolvable annotations fall back to defaults' types
        hints = {}
    options = {}
    for p in inspect.signature(target).parameters.values():
        if p.default is inspect.Parameter.empty or p.name == "self":
            continue
        typ = hints.get(p.name, type(p.default))
        origin = typing.get_origin(typ)
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            args = [a for a in typing.get_args(typ) if a is not type(None)]
            typ = args[0] if args else str
        if typ not in (bool, int, float, str):
            typ = str
        options[p.name] = Option(p.name, typ, p.default)
    return options


class PluginWarning(UserWarning):
    """A plugin could not be loaded; odebench works on without it."""


class Registry:
    """A named collection of builders; `package` is imported lazily so every entry registers.

    A registry with an entry-point `group` also loads the plugins (all groups, once) on first use.
    """

    def __init__(self, kind: str, package: str, group: str = "") -> None:
        self.kind = kind
        self.package = package
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        if group:
            _PLUGGABLE.append(self)

    def register(self, name: str, description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `builder` under `name` with a one-line description."""

        def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                owner = self._entries[name].plugin
                raise ValueError(f"{self.kind} '{name}' registered twice (already {'by ' + owner if owner else 'built in'})")
            self._entries[name] = Entry(name, builder, description, options_of(builder), self.kind)
            return builder

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.package)
            if self.group:
                load_plugins()

    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        """The entry for `name`; an unknown name is a UserError listing the known ones."""
        self._load()
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        return self._entries[name]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.get(n) for n in self.names())

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


_PLUGGABLE: list[Registry] = []
_plugins: dict[str, str] | None = None  # distribution -> version of each loaded plugin; None before loading


def load_plugins() -> None:
    """Import every plugin entry point once, after all built-ins.

    Built-ins come first so that a plugin taking a built-in's name is the plugin's error. A plugin
    that fails (import error, exception while registering, a name already taken) loses every entry
    it registered and is named in one `PluginWarning`; the others load on.
    """
    global _plugins
    if _plugins is None:
        _plugins = {}
        for registry in _PLUGGABLE:
            registry._load()
        seen: set[str] = set()
        for registry in _PLUGGABLE:
            for ep in metadata.entry_points(group=registry.group):
                if ep.value not in seen:  # one module may be listed under several groups
                    seen.add(ep.value)
                    _load_plugin(ep)


def loaded_plugins() -> dict[str, str]:
    """{distribution: version} of the plugins loaded so far (for provenance)."""
    return dict(_plugins or {})


def _load_plugin(ep: metadata.EntryPoint) -> None:
    """Import one entry point and mark what it registered with its distribution, or undo it and warn."""
    dist = ep.dist.name if ep.dist else ep.value
    before = {registry: set(registry._entries) for registry in _PLUGGABLE}
    try:
        ep.load()
    except Exception as exc:  # a plugin's bug must not break odebench or the other plugins
        for registry, names in before.items():
            for name in set(registry._entries) - names:
                del registry._entries[name]
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        # warn_explicit with no source line: the CLI prints exactly one line
        warnings.warn_explicit(f"plugin {dist} skipped: {reason} (entry point {ep.name} = {ep.value} in {ep.group})",
                               PluginWarning, "odebench", 0)
        return
    for registry, names in before.items():
        for name in set(registry._entries) - names:
            registry._entries[name].plugin = dist
    _plugins[dist] = ep.dist.version if ep.dist else "unknown"


MODELS = Registry("model", "robustbench_ode.models", "odebench.models")
ATTACKS = Registry("attack", "robustbench_ode.attacks", "odebench.attacks")
DATASETS = Registry("dataset", "robustbench_ode.data", "odebench.datasets")
METHODS = Registry("training method", "robustbench_ode.training.builtin_methods", "odebench.methods")


def parse_kv(pairs: list[str] | None, what: str = "option") -> dict[str, str]:
    """Parse ['k=v', ...] into a dict; a malformed pair is a UserError."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise UserError(f"{what} '{pair}' is not of the form key=value")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out
