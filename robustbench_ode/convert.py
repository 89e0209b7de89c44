"""Convert a third-party PyTorch checkpoint to safetensors without running any of its code.

`torch.save(model)` pickles the whole module: loading it normally imports the model's classes
and runs whatever the pickle asks for (a `__reduce__` can call `os.system`). `SafeUnpickler`
reads the pickle with every global replaced by an inert `Stub` class that records its name and
absorbs arguments and state, except the few callables tensor reconstruction needs (`ALLOWED`) and
the storage types, which only carry a dtype here. Nothing is imported, nothing named by the file
is called. The object graph is then walked for tensors, named as `state_dict()` names them
(`features.0.weight`: a module's `_parameters`, persistent `_buffers` and `_modules`), or by key
path in plain (nested) dicts.

Formats: torch's zip archive (`<name>/data.pkl` + `<name>/data/<key>`, torch >= 1.6) and the
legacy non-zip stream (magic number, protocol, system info, the pickle, storage keys, raw storages).
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar

import torch
import torch._utils
from safetensors.torch import save_file

from .errors import UserError, option
from .runinfo import shared

ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MODULE_KEYS = ("state_dict", "model")  # a checkpoint dict holding the weights under one of these


@dataclass(frozen=True)
class StorageType:
    """What a `torch.FloatStorage` global means here: a dtype, nothing else."""

    dtype: torch.dtype


class Stub:
    """An inert stand-in for a global named by the pickle: created, never imported or run.

    Arguments (REDUCE, NEWOBJ), state (BUILD) and items (APPENDS, SETITEMS) are recorded on the
    instance; `calls` counts, per global, the calls (REDUCE) the pickle asked for.
    """

    stub_name: ClassVar[str]
    calls: ClassVar[Counter]

    def __new__(cls, *args: Any, **kwargs: Any) -> "Stub":
        obj = object.__new__(cls)
        obj.stub_args, obj.stub_state, obj.stub_items = args, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls[self.stub_name] += 1

    def __setstate__(self, state: Any) -> None:
        self.stub_state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stub_items.append((key, value))

    def append(self, value: Any) -> None:
        self.stub_items.append(value)

    def extend(self, values: list[Any]) -> None:
        self.stub_items.extend(values)

    def __repr__(self) -> str:
        return f"<stub {self.stub_name}>"


@dataclass
class Globals:
    """The globals a file names: one stub class per full name, and the calls asked of them."""

    classes: dict[str, type] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)

    def stub(self, full: str) -> type:
        if full not in self.classes:
            self.classes[full] = type(f"Stub[{full}]", (Stub,), {"stub_name": full, "calls": self.calls})
        return self.classes[full]


Reader = Callable[[str, torch.dtype, int], torch.storage.TypedStorage]


class SafeUnpickler(pickle.Unpickler):
    """Unpickles with stubs for every global but `ALLOWED` and storage types; storages come from `read`."""

    def __init__(self, fh: BinaryIO, read: Reader, names: Globals) -> None:
        super().__init__(fh)
        self.read, self.names = read, names

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(STORAGE_DTYPES[name])
        return self.names.stub(f"{'builtins' if module == '__builtin__' else module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] in ("module", b"module"):
            return pid[1]  # legacy files name a module's class with its source code: the class (a stub) is all we keep
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (a pre-1.0 legacy file) are not supported")
        _, storage_type, key, _location, numel = pid[:5]
        return self.read(str(key), storage_type.dtype, int(numel))


def _typed(raw: torch.Tensor, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=raw.untyped_storage(), dtype=dtype, _internal=True)


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def _load_zip(path: Path, names: Globals) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise UserError(f"'{path}' is a zip archive but not a torch.save checkpoint (no single */data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in archive.namelist() and archive.read(prefix + "byteorder").strip() != b"little":
            raise UserError(f"'{path}' was saved on a big-endian machine; convert it there")

        def read(key: str, dtype: torch.dtype, numel: int) -> torch.storage.TypedStorage:
            raw = _bytes_tensor(archive.read(f"{prefix}data/{key}"))
            if len(raw) != numel * _element_size(dtype):
                raise pickle.UnpicklingError(f"storage {key} has {len(raw)} bytes, expected {numel} elements")
            return _typed(raw, dtype)

        return SafeUnpickler(io.BytesIO(archive.read(pickles[0])), read, names).load()


def _load_legacy(path: Path, names: Globals) -> Any:
    storages: dict[str, tuple[torch.Tensor, int]] = {}  # key -> (bytes, element size)

    def read(key: str, dtype: torch.dtype, numel: int) -> torch.storage.TypedStorage:
        if key not in storages:  # filled after the pickle, from the raw section
            storages[key] = torch.zeros(numel * _element_size(dtype), dtype=torch.uint8), _element_size(dtype)
        return _typed(storages[key][0], dtype)

    def no_storage(key: str, dtype: torch.dtype, numel: int) -> torch.storage.TypedStorage:
        raise pickle.UnpicklingError("storage outside the main pickle")

    with open(path, "rb") as fh:
        header = [SafeUnpickler(fh, no_storage, names).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise pickle.UnpicklingError("not a torch checkpoint")
        result = SafeUnpickler(fh, read, names).load()
        for key in SafeUnpickler(fh, no_storage, names).load():
            raw, element_size = storages[str(key)]
            numel = int.from_bytes(fh.read(8), "little")
            data = fh.read(len(raw))
            if len(data) != len(raw) or numel * element_size != len(raw):
                raise pickle.UnpicklingError(f"storage {key} is truncated or has the wrong size")
            if data:
                raw.copy_(_bytes_tensor(data))
    return result


def safe_load(path: Path) -> tuple[Any, Globals]:
    """The unpickled object and the globals it names (stubbed; none imported or called)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"'{path}' does not exist or is not a file")
    names = Globals()
    try:
        obj = _load_zip(path, names) if zipfile.is_zipfile(path) else _load_legacy(path, names)
    except UserError:
        raise
    except Exception as exc:  # anything a hostile or damaged file can provoke: refuse it in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"'{path}' is not a PyTorch checkpoint this converter can read ({reason[:120]})") from None
    return obj, names


def _module_state(obj: Any) -> dict[str, Any] | None:
    """The attribute dict of a stubbed nn.Module (one with `_parameters` / `_modules`), else None."""
    state = obj.stub_state if isinstance(obj, Stub) else None
    if isinstance(state, dict) and all(isinstance(state.get(k), dict) for k in ("_parameters", "_modules")):
        return state
    return None


def _names_in_set(obj: Any) -> set[str]:
    """The strings of a pickled `set([...])` (a stub of builtins.set), or of a real set."""
    if isinstance(obj, (set, frozenset)):
        return {str(v) for v in obj}
    if isinstance(obj, Stub) and obj.stub_name == "builtins.set" and obj.stub_args:
        return {str(v) for v in obj.stub_args[0]} if isinstance(obj.stub_args[0], list) else set()
    return set()


def collect_tensors(obj: Any, prefix: str = "", seen: frozenset[int] = frozenset()) -> dict[str, torch.Tensor]:
    """Every tensor reachable from `obj`, named by module attribute path or dict key path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if id(obj) in seen:  # a reference cycle
        return {}
    seen = seen | {id(obj)}
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    out: dict[str, torch.Tensor] = {}
    module = _module_state(obj)
    if module is not None:
        skip = _names_in_set(module.get("_non_persistent_buffers_set"))
        buffers = module.get("_buffers") if isinstance(module.get("_buffers"), dict) else {}
        for key, value in [*module["_parameters"].items(), *((k, v) for k, v in buffers.items() if k not in skip)]:
            if isinstance(value, torch.Tensor):
                out[join(key)] = value
        for key, child in module["_modules"].items():
            out |= collect_tensors(child, join(key), seen)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            out |= collect_tensors(value, join(key), seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out |= collect_tensors(value, join(i), seen)
    elif isinstance(obj, Stub) and isinstance(obj.stub_state, dict):
        out |= collect_tensors(obj.stub_state, prefix, seen)
    return out


def _children(obj: Any) -> dict[Any, Any]:
    """What a dotted `--key` part can name inside `obj`: submodules, dict items or a stub's attributes."""
    module = _module_state(obj)
    if module is not None:
        return module["_modules"]
    if isinstance(obj, Stub):
        return obj.stub_state if isinstance(obj.stub_state, dict) else {}
    return obj if isinstance(obj, dict) else {}


def select(obj: Any, key: str | None) -> Any:
    """The part of a checkpoint holding the weights: `key` (dotted), else 'state_dict' / 'model' if present."""
    if key is None:
        return next((obj[k] for k in MODULE_KEYS if k in obj), obj) if isinstance(obj, dict) else obj
    for part in key.split("."):
        children = _children(obj)
        if part not in children:
            shown = ", ".join(map(str, list(children)[:10])) or "none"
            raise UserError(f"{option('key')} {key}: no '{part}' here (keys: {shown})")
        obj = children[part]
    return obj


@dataclass
class Conversion:
    """What `convert` found: the tensors written, and the globals the file named."""

    tensors: dict[str, torch.Tensor]
    classes: list[str]  # every global replaced by a stub, sorted
    calls: dict[str, int]  # globals the pickle asked to call (REDUCE), with counts; none were called


def convert(src: Path, dst: Path, key: str | None = None, strip_prefix: str = "") -> Conversion:
    """Read `src` safely, write its tensors to the safetensors file `dst`, and say what was found."""
    dst = Path(dst)
    if dst.is_dir():
        raise UserError(f"'{dst}' is a directory; give the .safetensors file to write")
    if dst.resolve() == Path(src).resolve():
        raise UserError("the output file must differ from the input")
    obj, names = safe_load(src)
    try:
        found = collect_tensors(select(obj, key))
    except RecursionError:
        raise UserError(f"'{src}' nests its objects too deeply to walk") from None
    if not found:
        raise UserError(f"'{src}' holds no tensors" + ("" if key else f" (try {option('key')} to pick the part with the weights)"))
    tensors = {(k[len(strip_prefix):] if strip_prefix and k.startswith(strip_prefix) else k):
               v.detach().cpu().contiguous().clone() for k, v in found.items()}
    if len(tensors) != len(found):
        raise UserError(f"{option('strip_prefix')} {strip_prefix!r} makes two tensor names equal")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt", "converted_from": Path(src).name})
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write '{dst}': {str(exc).splitlines()[0]}") from None
    shared(tmp).replace(dst)
    return Conversion(tensors, sorted(names.classes), dict(names.calls))
