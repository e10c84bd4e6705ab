"""One word, one meaning (docs/architecture.md): the bundled model is never called "shipped" (that is a checkpoint
measured as its publisher shipped it), and the model `--plan-for` names is never called "the target" (that is where
the team deploys)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIXED = [
    re.compile(r"\bshipped\s+(model|text|tokenizer|calibration)", re.I),
    re.compile(r"\btarget's\s+(size|shape|scale|own|average|depth|decoder|accuracy|weights|slices|layers)\b", re.I),
    re.compile(r"\bslices of (the|a)\s+target\b", re.I),
    re.compile(r"\bwhole target\b", re.I),
]


def _texts():
    yield from sorted((ROOT / "qadvisor").rglob("*.py"))
    yield from sorted((ROOT / "docs").glob("*.md"))
    yield ROOT / "README.md"


def test_no_word_is_used_for_two_things():
    found = [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for path in _texts()
             for pattern in MIXED for m in pattern.finditer(path.read_text(encoding="utf-8"))]
    assert not found, found


def test_the_check_finds_a_mixed_word():
    assert any(p.search("the shipped model's held-out split") for p in MIXED)
    assert any(p.search("at the target's size") for p in MIXED)
    assert not any(p.search("a checkpoint measured as shipped, for the target advice") for p in MIXED)
