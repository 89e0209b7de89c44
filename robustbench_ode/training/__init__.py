"""Training: the run's settings (config), the epoch loop (trainer), a run with progress
(train_progress) and training methods (loss strategies, registered by builtin_methods)."""
