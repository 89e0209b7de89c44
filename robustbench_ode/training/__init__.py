"""Training: the epoch loop (trainer) and training methods (loss strategies)."""
