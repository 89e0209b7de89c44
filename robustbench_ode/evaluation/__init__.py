"""Evaluation: the attack runner (model x attack x eps grid -> result rows) and its store."""
