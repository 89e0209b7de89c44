"""Training: the epoch loop (trainer) and training methods (loss strategies)."""
from . import adversarial, trades, yopo  # noqa: F401  (registers pgd, trades, yopo in registry.METHODS)
