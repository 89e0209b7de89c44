"""`python -m robustbench_ode` is the same as the `odebench` command."""
from .cli import main

main()
