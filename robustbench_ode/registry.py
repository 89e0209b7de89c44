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

The catalogue (`catalogue.json`, written by `python -m robustbench_ode.registry`): the built-in
entries' names, descriptions, options and traits (an attack's `uses_gradients` and `norm`), with a
hash of the sources they come from. Listing, name and option checks read it instead of importing
torch and every model (4 s): `odebench list` and a bad `--model` answer at once. It is used only
while it matches the sources and no plugin is installed; anything else (building, a stale
catalogue) imports the registries for real. A test keeps the shipped catalogue current.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import typing
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError
from .parsing import parse_bool, parse_number

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
                return parse_bool(text)
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


@dataclass
class Entry:
    """A registered builder with its description, options and traits.

    An entry read from the catalogue has no builder yet (`_live` finds it): asking for `builder`
    imports the registry for real; names, options and traits do not.
    """

    name: str
    _builder: Callable[..., Any] | None
    description: str
    options: dict[str, Option] = field(default_factory=dict)
    kind: str = ""
    plugin: str = ""  # the distribution that registered it; "" for a built-in
    _traits: dict[str, Any] | None = None
    _live: Callable[[], "Entry"] | None = field(default=None, repr=False, compare=False)
    _describe: Callable[[Any], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def builder(self) -> Callable[..., Any]:
        """The registered function or class (imports the registry if this entry is catalogued)."""
        if self._builder is None:
            assert self._live is not None
            self._builder = self._live()._builder
        return self._builder

    @property
    def traits(self) -> dict[str, Any]:
        """What the registry's `traits` function says of the builder (an attack: uses_gradients, norm)."""
        if self._traits is None:
            self._traits = self._describe(self.builder) if self._describe else {}
        return self._traits

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

    A registry with an entry-point `group` also loads the plugins (all groups, once) on first use;
    until then its names, options and `traits` (attributes of each builder) come from the catalogue
    where that is current.
    """

    def __init__(self, kind: str, package: str, group: str = "",
                 traits: Callable[[Any], dict[str, Any]] | None = None) -> None:
        self.kind = kind
        self.package = package
        self.group = group
        self.traits = traits
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
            self._entries[name] = Entry(name, builder, description, options_of(builder), self.kind,
                                        _describe=self.traits)
            return builder

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.package)
            if self.group:
                load_plugins()

    def _current(self) -> dict[str, Entry]:
        """The entries: catalogued ones while the catalogue is current and nothing loaded, else live."""
        if not self._loaded and self.group:
            catalogued = catalogue().get(self.kind)
            if catalogued is not None:
                return catalogued
        self._load()
        return self._entries

    def _live_entry(self, name: str) -> Entry:
        self._load()
        return self._entries[name]

    def _live_names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._current())

    def get(self, name: str) -> Entry:
        """The entry for `name`; an unknown name is a UserError listing the known ones."""
        entries = self._current()
        if name not in entries:
            raise UserError(f"unknown {self.kind} '{name}' (known: {', '.join(sorted(entries))})")
        return entries[name]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.get(n) for n in self.names())

    def __contains__(self, name: str) -> bool:
        return name in self._current()


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


def _attack_traits(attack_class: Any) -> dict[str, Any]:
    """Whether an attack takes gradients, and its norm when built with its defaults."""
    return {"uses_gradients": bool(attack_class.uses_gradients), "norm": attack_class().norm}


MODELS = Registry("model", "robustbench_ode.models", "odebench.models")
ATTACKS = Registry("attack", "robustbench_ode.attacks", "odebench.attacks", traits=_attack_traits)
DATASETS = Registry("dataset", "robustbench_ode.data", "odebench.datasets")
METHODS = Registry("training method", "robustbench_ode.training.builtin_methods", "odebench.methods")


CATALOGUE = Path(__file__).with_name("catalogue.json")
_HERE = Path(__file__).parent
_catalogue: dict[str, dict[str, Entry]] | None = None  # kind -> entries; {} where the catalogue is not current


def sources_hash() -> str:
    """SHA-256 over the sources that decide the project registries' contents (their packages and this file)."""
    digest = hashlib.sha256()
    files = [Path(__file__)] + sorted(p for registry in _PLUGGABLE
                                      for p in (_HERE / registry.package.split(".")[1]).rglob("*.py"))
    for path in files:
        digest.update(path.relative_to(_HERE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plugins_installed() -> bool:
    found = metadata.entry_points()
    return any(found.select(group=registry.group) for registry in _PLUGGABLE)


def catalogue() -> dict[str, dict[str, Entry]]:
    """The built-in entries by kind from `catalogue.json`, or {} where it is stale, absent or plugins exist."""
    global _catalogue
    if _catalogue is None:
        _catalogue = {}
        try:
            data = json.loads(CATALOGUE.read_text())
        except (OSError, ValueError):
            return _catalogue
        if data.get("sources") == sources_hash() and not _plugins_installed():
            by_kind = {registry.kind: registry for registry in _PLUGGABLE}
            _catalogue = {kind: {e["name"]: _catalogued(by_kind[kind], e) for e in entries}
                          for kind, entries in data["entries"].items() if kind in by_kind}
    return _catalogue


def _catalogued(registry: Registry, record: dict[str, Any]) -> Entry:
    options = {name: Option(name, _TYPES[typ], default) for name, typ, default in record["options"]}
    return Entry(record["name"], None, record["description"], options, registry.kind, _traits=record["traits"],
                 _live=lambda: registry._live_entry(record["name"]))


_TYPES = {t.__name__: t for t in (bool, int, float, str)}


def catalogue_data() -> dict[str, Any]:
    """What `catalogue.json` holds, from the live built-in registries (plugins left out)."""
    entries = {registry.kind: [{"name": e.name, "description": e.description,
                                "options": [[o.name, o.type.__name__, o.default] for o in e.options.values()],
                                "traits": e.traits}
                               for e in (registry._live_entry(n) for n in sorted(registry._live_names()))
                               if not e.plugin]
               for registry in _PLUGGABLE}
    return {"sources": sources_hash(), "entries": entries}


def write_catalogue() -> Path:
    """Rewrite `catalogue.json` from the sources (after adding or changing a registered builder)."""
    CATALOGUE.write_text(json.dumps(catalogue_data(), indent=1, ensure_ascii=False) + "\n")
    return CATALOGUE


if __name__ == "__main__":  # python -m robustbench_ode.registry (the registries live in the imported module)
    import robustbench_ode.registry as loaded

    print(f"wrote {loaded.write_catalogue()}")
