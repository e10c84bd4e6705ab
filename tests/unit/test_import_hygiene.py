import subprocess
import sys


def test_core_and_cli_do_not_import_textual_or_heavy_backends():
    code = (
        "import sys, qadvisor.core.measure.runner, qadvisor.core.hardware, qadvisor.cli, qadvisor.console;"
        "from qadvisor.quantizers import registry; registry.methods();"
        "bad = [m for m in ('textual', 'bitsandbytes', 'gptqmodel', 'hqq', 'optimum.quanto', 'torchao') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layers_hold():
    """pyproject's import-linter contracts: faces → app → core → quantizers → schemas, Textual only in the TUI."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    linter = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(linter)], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_ruff_finds_nothing():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "qadvisor", "tests", "benchmarks", "scripts"],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_no_function_is_longer_than_60_lines():
    """Small functions a newcomer can read at once (STYLE.md): a longer one is split where it does two things."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "qadvisor"
    long = [f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in root.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert long == []
