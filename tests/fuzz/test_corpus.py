"""Replay the committed fuzz corpus through every harness (tests/fuzz/harnesses.py).

Each file under ``tests/fuzz/corpus/<harness>/`` (seeds from the vendored captures, and every
minimized crash a campaign of ``scripts/fuzz.py`` found) must satisfy its harness's property:
it decodes, or the decoder raises its own error naming the offset, frame, line or sequence
number.
"""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harnesses import HARNESSES  # noqa: E402

CASES = sorted((d.name, p) for d in (HERE / "corpus").iterdir() if d.is_dir()
               for p in d.iterdir() if p.is_file())


def test_every_harness_has_a_corpus():
    assert sorted({name for name, _ in CASES}) == sorted(HARNESSES)


@pytest.mark.parametrize("harness,path", CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_corpus_input(harness, path):
    HARNESSES[harness](path.read_bytes())
