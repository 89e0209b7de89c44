"""Published robustness claims, checked on the released weights: the ledger (`ledger`, one TOML
file per claim in `published/`) and the check that judges each published number (`check`)."""
from .ledger import Claim, get_claim, load_claim, load_ledger

__all__ = ["Claim", "get_claim", "load_claim", "load_ledger"]
