"""Weights given as files (`--weights`, a claim's released file): a .safetensors file or a .pt/.pth
state dict (`torch.load(weights_only=True)`: unpickling runs no code) read into tensors and loaded
strictly into a network, with one-line errors that say what does not fit and how to convert; and
the SHA-256 that identifies a network's tensors when there is no file."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from .errors import UserError, existing_file, first_line, option

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def state_sha256(model: nn.Module) -> str:
    """SHA-256 of the model's tensors serialised as safetensors (a checkpoint's `weights_sha256`
    for the same tensors), identifying a model that comes without a weights file."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)}
    return hashlib.sha256(save(state)).hexdigest()


def read_weights(path: Path) -> dict[str, Tensor]:
    """Tensors by name from a .safetensors file or a .pt/.pth state dict (`weights_only=True`:
    unpickling runs no code); anything else is a UserError."""
    existing_file(path, "weights")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"{option('weights')} '{path}': give a .safetensors file or a .pt/.pth state dict, not '{suffix or path.name}'")
    if suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{option('weights')} '{path}' is not a readable safetensors file ({first_line(exc)})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{option('weights')} '{path}' cannot be read by torch.load(weights_only=True) ({type(exc).__name__}: "
                        "a whole pickled model, or not a torch file); to extract the tensors of a pickled model: "
                        f"odebench convert {path} OUT.safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{option('weights')} '{path}' holds a {type(state).__name__}, not a state dict of tensors; "
                        f"try: odebench convert {path} OUT.safetensors --key state_dict")
    return state


def _extra_prefix(names: list[str], own: list[str]) -> str:
    """The first name component every name in a weights file carries and the model's lack, when
    dropping it makes the names the model's ('model.', 'net.'); '' otherwise."""
    first = {n.split(".", 1)[0] for n in names}
    if len(first) != 1 or "." not in names[0]:
        return ""
    prefix = f"{first.pop()}."
    return prefix if {n.removeprefix(prefix) for n in names} == set(own) else ""


def load_weights(net: nn.Module, path: Path, state: dict[str, Tensor] | None = None) -> None:
    """Load a weights file (or its tensors `state`, already read) into `net` (strict); a mismatch
    names the first differing tensors. The `module.` prefix of a file saved from DataParallel
    (every name carries it, `net`'s do not) is dropped first."""
    state = read_weights(path) if state is None else state
    own = net.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state
                and isinstance(own[k], Tensor) and state[k].shape != own[k].shape]

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    problems = [f"{what}: {some(names)}" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("shape differs", reshaped)) if names]
    if problems:
        prefix = _extra_prefix(list(state), list(own))
        hint = f"; every name carries '{prefix}': odebench convert {path} OUT.safetensors --strip-prefix {prefix}" \
            if prefix else ""
        raise UserError(f"{option('weights')} '{path}' do not fit the model ({'; '.join(problems)}){hint}")
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"{option('weights')} '{path}' do not fit the model ({' '.join(str(exc).split())})") from None


def load_registered_weights(model: nn.Module, path: Path, state: dict[str, Tensor]) -> nn.Module:
    """Load the tensors `state` (read from `path`) into a registered model, strictly: an odebench
    checkpoint's tensors (named `body.*`) into the classifier, any other layout (a published one,
    such as yan2020_ode's) into its body; return the module they were loaded into."""
    target = model if any(k.startswith("body.") for k in state) else getattr(model, "body", model)
    load_weights(target, path, state)
    return target
