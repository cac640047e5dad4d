"""tests/tools/mutate.py (the mutant runner) and its tables: occurrences are picked by text, tables are well formed."""
import glob
import os

from tests.tools import mutate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_apply_replaces_the_nth_occurrence_only():
    text = "if v < 0:\n    x\nif v < 0:\n"
    assert mutate.apply(text, "v < 0", "v <= 0", 0) == "if v <= 0:\n    x\nif v < 0:\n"
    assert mutate.apply(text, "v < 0", "v <= 0", 1) == "if v < 0:\n    x\nif v <= 0:\n"
    assert mutate.apply(text, "v < 0", "v <= 0", 2) is None  # stale: reported, not run
    assert mutate.apply(text, "w < 0", "w <= 0", 0) is None


def test_tables_are_well_formed():
    tables = glob.glob(os.path.join(ROOT, "tests", "tools", "mutants", "*.py"))
    assert tables
    for path in tables:
        file, tests, mutants = mutate.load_table(path)
        assert os.path.isfile(os.path.join(ROOT, file)), path
        assert tests and all(os.path.exists(os.path.join(ROOT, t.split("::")[0])) for t in tests), path
        ids = [m[0] for m in mutants]
        assert len(ids) == len(set(ids)), f"{path}: duplicate mutant ids"
        for mid, old, new, desc, nth in mutants:
            assert old and old != new and desc and isinstance(nth, int) and nth >= 0, (path, mid)
