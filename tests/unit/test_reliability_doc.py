"""Every row of docs/reliability.md names the test that checks it ("same": the row above's), and every test or test
file it names exists: the table of faults cannot cite checks that are gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_row_names_a_test_that_exists():
    rows = [line for line in (ROOT / "docs" / "reliability.md").read_text().splitlines() if re.match(r"^\| \d", line)]
    defined = {name for path in (ROOT / "tests").rglob("*.py") for name in re.findall(r"def (test_\w+)", path.read_text())}
    files = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")}
    assert len(rows) > 80
    cited: list[str] = []
    for row in rows:
        number, *_, checked_by = [cell.strip() for cell in row.strip("|").split("|")]
        named = re.findall(r"test_\w+", checked_by) + re.findall(r"tests/[\w/]+\.py", checked_by)
        cited = cited if checked_by == "same" else named
        assert cited, f"row {number} names no test"
        gone = [n for n in cited if n not in defined and n not in files and f"tests/unit/{n}.py" not in files
                and not any(f.endswith(f"/{n}.py") for f in files)]
        assert not gone, f"row {number} cites {gone}, which no test defines"
