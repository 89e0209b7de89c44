"""A cache of decoded image trees, keyed by the tree's content so it is never served stale.

The key is a SHA-256 over (relative path, size, mtime_ns) of every source file: editing, adding or
removing a file changes it and forces a re-read. The cache lives in `<tree>/.odebench-cache/` when
the tree is writable, else in `$ODEBENCH_CACHE` (default `~/.cache/odebench/`) under a name derived
from the tree's path. Files are plain tensors written atomically (temp file + `os.replace`) and
loaded with `weights_only=True`; a newer cache of the same tree replaces older ones.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

FORMAT = 1
CACHE_DIRNAME = ".odebench-cache"


def fingerprint(files: Iterable[tuple[str, int, int]]) -> str:
    """SHA-256 over each file's (relative path, size, mtime_ns)."""
    digest = hashlib.sha256(f"odebench-image-cache-v{FORMAT}\n".encode())
    for rel, size, mtime_ns in files:
        digest.update(f"{rel}\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()


def fallback_dir() -> Path:
    """Where caches of read-only trees go: `$ODEBENCH_CACHE`, else `~/.cache/odebench`."""
    return Path(os.environ.get("ODEBENCH_CACHE") or Path.home() / ".cache" / "odebench")


def load(root: Path, key: str) -> dict[str, Any] | None:
    """The cached payload for `root` with fingerprint `key`, or None if there is no valid one."""
    for path in (_path(d, stem, key) for d, stem in _locations(root)):
        if not path.is_file():
            continue
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
            continue  # unreadable cache: rebuild rather than fail
        if isinstance(payload, dict) and payload.get("fingerprint") == key:
            return payload
    return None


def save(root: Path, key: str, payload: dict[str, Any]) -> Path | None:
    """Write `payload` (plus its fingerprint) atomically; returns the file, or None if nowhere is writable."""
    payload = {**payload, "fingerprint": key}
    locations = _locations(root) if _writable(root) else _locations(root)[1:]
    errors = []
    for directory, stem in locations:
        target, tmp = _path(directory, stem, key), None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}-", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as its tree
            os.replace(tmp, target)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            errors.append(f"{directory}: {exc}")
            continue
        for stale in directory.glob(f"{stem}-*.pt"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target
    warnings.warn(f"could not write the image cache for {root} ({'; '.join(errors)}); it will be decoded again")
    return None


def _locations(root: Path) -> list[tuple[Path, str]]:
    """(directory, file stem) candidates: inside the tree first, then the per-user fallback."""
    tree_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [(root / CACHE_DIRNAME, "images"), (fallback_dir(), f"images-{tree_id}")]


def _path(directory: Path, stem: str, key: str) -> Path:
    return directory / f"{stem}-{key[:24]}.pt"


def _writable(root: Path) -> bool:
    """Writable by permission *bits* too: root ignores them, but a r-x tree is meant read-only."""
    cache = root / CACHE_DIRNAME
    target = cache if cache.is_dir() else root
    mode = target.stat().st_mode
    return os.access(target, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
