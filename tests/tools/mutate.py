"""Run a table of hand-made mutants of one source file against chosen tests: which planted bugs does the suite
kill? (Engineering standard: a suite is worth the bugs it kills.)

A table is a Python file defining FILE (the mutated file, relative to the repository root), TESTS (the pytest
arguments to run) and MUTANTS, a list of (id, old, new, description) or (id, old, new, description, nth): the
nth (from 0) occurrence of the exact text `old` in FILE becomes `new`. Text, not line numbers, so a table
survives edits elsewhere in the file; a mutant whose text is gone is reported as stale, not run.

Each mutant runs in a scratch copy of the repository's files (those git tracks or would not ignore, plus the
compiled extension when built), so the working tree is never touched; the tests must pass there without a mutant
first. Exit status 0 when every mutant was killed, 1 when one survived or is stale, 2 when the tests fail without
one.

    python -m tests.tools.mutate tests/tools/mutants/validate.py            # every mutant
    python -m tests.tools.mutate tests/tools/mutants/validate.py M26 M39    # some of them

The tables in tests/tools/mutants/ are the campaigns of 2026-12-07 (validate.py: 56 mutants; dispatch.py: 51;
fast_launch.py: 40; cupy_launch.py: 79; cupy_plan_record.py: 13; native_nodes.py: 10; reference_*.py: 95 mutants of
reference/, one table per file).
Runs take minutes (a pytest run per mutant): this is a tool for whoever changes a module or its tests, not a CI test.
"""
from __future__ import annotations

import argparse
import glob
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_table(path: str) -> tuple[str, list, list]:
    t = runpy.run_path(path)
    return t["FILE"], list(t["TESTS"]), [tuple(m) + (0,) * (5 - len(m)) for m in t["MUTANTS"]]


def apply(text: str, old: str, new: str, nth: int):
    """text with the nth occurrence of old replaced, or None when there is no such occurrence."""
    at = -1
    for _ in range(nth + 1):
        at = text.find(old, at + 1)
        if at < 0:
            return None
    return text[:at] + new + text[at + len(old):]


def scratch_copy(dest: str) -> None:
    """The repository's files as they are in the working tree (tracked ones and new ones git does not ignore) and the
    compiled extension."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, (f.decode() for f in files)):
        src = os.path.join(ROOT, f)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, f))
    for so in glob.glob(os.path.join(ROOT, "vmamba_kernels", "_C*.so")):
        shutil.copy2(so, os.path.join(dest, "vmamba_kernels"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", help="a mutant table (see the module docstring)")
    ap.add_argument("ids", nargs="*", help="run only these mutants")
    args = ap.parse_args(argv)
    file, tests, mutants = load_table(args.table)
    if args.ids:
        mutants = [m for m in mutants if m[0] in set(args.ids)]
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        scratch_copy(tmp)
        target = os.path.join(tmp, file)
        original = open(target).read()
        env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1")

        def run_tests():
            return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                  cwd=tmp, env=env, capture_output=True, text=True)

        base = run_tests()  # a suite failing without a mutant would "kill" every one
        if base.returncode != 0:
            print(f"the tests fail without any mutant (exit {base.returncode}):\n{base.stdout[-2000:]}{base.stderr[-2000:]}")
            return 2
        survived = stale = 0
        for mid, old, new, desc, nth in mutants:
            mutated = apply(original, old, new, nth)
            if mutated is None:
                stale += 1
                print(f"{mid:5s} STALE     {desc} (text not found: {old!r}, occurrence {nth})", flush=True)
                continue
            with open(target, "w") as f:
                f.write(mutated)
            t0 = time.perf_counter()
            p = run_tests()
            with open(target, "w") as f:
                f.write(original)
            killed = p.returncode != 0
            survived += not killed
            first = next((ln for ln in p.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))), "")
            print(f"{mid:5s} {'killed  ' if killed else 'SURVIVED'}  {time.perf_counter() - t0:5.1f} s  {desc}"
                  + (f"  <- {first[:150]}" if first else ""), flush=True)
    run = len(mutants) - stale
    print(f"{run - survived} of {run} mutants killed" + (f", {stale} stale" if stale else "")
          + f" ({file}; pytest {' '.join(tests)})")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
