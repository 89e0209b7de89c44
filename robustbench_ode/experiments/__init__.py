"""Experiments: the quickstart and the paper's E1-E5 as declarative specs."""
