"""odebench's version, in a module of its own so that provenance (`runinfo`) can record it without
importing the package's front door (`robustbench_ode/__init__.py`, which re-exports the Python API)."""
__version__ = "0.1.0"
