"""Text the user typed -> values: numbers and fractions ('8/255'), booleans, key=value pairs.
Torch-free, for the CLI's checks and every module that reads options."""
from __future__ import annotations

from .errors import UserError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_number(text: str) -> float:
    """Parse '0.3', '1e-3' or a fraction like '8/255' into a float."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def parse_bool(text: str) -> bool:
    """'true'/'yes'/'on'/'1' or 'false'/'no'/'off'/'0' (any case); anything else is a ValueError."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


def parse_kv(pairs: list[str] | None, what: str = "option") -> dict[str, str]:
    """Parse ['k=v', ...] into a dict; a malformed pair is a UserError."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise UserError(f"{what} '{pair}' is not of the form key=value")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out
