"""How long `odebench` takes to answer: help, listings and bad arguments, each in a fresh process.

    python benchmarks/cli_startup.py [--runs 5]

Runs every command `--runs` times through the installed entry point (a new Python each time, as a
user's shell does) and prints a Markdown table of the median and the worst wall time, the exit
code, and whether the command had to import torch, with the CPU's flags. A planning tool, never a
pass/fail test (tests/test_startup.py checks that these commands import no torch).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from robustbench_ode.precision import cpu_description

COMMANDS = [
    ["--help"],
    ["list"],
    ["list", "attacks"],
    ["attack", "--help"],
    ["attack", "-a", "nosuch", "--eps", "0.1"],
    ["attack", "-a", "pgd", "--eps", "abc"],
    ["attack", "-a", "pgd", "--attack-arg", "depth=3", "--eps", "0.1"],
    ["attack", "-c", "no/such/run", "--eps", "0.1"],
    ["train", "--model", "nosuch"],
    ["train", "--model", "resnet20", "--epochs", "0"],
    ["train", "--model", "resnet20", "--augment", "blur"],
    ["audit", "no/such/run"],
    ["converge", "-c", "no/such/run", "--eps", "0.1"],
    ["reproduce", "E9"],
    ["claims", "list"],
    ["attack", "--eps", "0.1", "--model-file", "no_such_file.py:build"],
    ["attack", "--eps", "0.1", "--model", "resnet20", "--weights", "no_such.safetensors"],
]

PROBE = "import runpy, sys; sys.argv = ['odebench', *sys.argv[1:]]; runpy.run_module('robustbench_ode', run_name='__main__')"


def run(args: list[str], cwd: str) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([shutil.which("odebench") or "odebench", *args], cwd=cwd, capture_output=True)
    return time.perf_counter() - start, done.returncode


def imports_torch(args: list[str], cwd: str) -> bool:
    code = f"import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules)); {PROBE}"
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True).stdout
    return "TORCH True" in out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cpu = cpu_description()
    print(f"CPU: {cpu['cpu']} ({', '.join(cpu['cpu_flags'])}), {cpu['cores']} cores; {runs} runs per command\n")
    print("| command | median s | worst s | exit | imports torch |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cwd:
        for args in COMMANDS:
            times, codes = zip(*(run(args, cwd) for _ in range(runs)))
            print(f"| `odebench {' '.join(args)}` | {statistics.median(times):.2f} | {max(times):.2f} | "
                  f"{codes[0]} | {'yes' if imports_torch(args, cwd) else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
