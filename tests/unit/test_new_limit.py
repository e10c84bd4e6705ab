"""Adding a hard limit is one row of schemas/limits.py LIMITS: a limit on time to first token, added as one row to a
copy of that module, is a flag, a profile field, a priorities option with its range, an advisor check and an input
of the TUI's form — with nothing else edited. Run in a fresh interpreter, so the row stays out of every other test."""

import subprocess
import sys
import textwrap

ROW = ('    Limit("max_ttft_ms", "max_ttft_ms", "max TTFT ms", "ms", "hard limit: time to first token", {"gt": 0}, '
       'lambda r: r.ttft_ms, lambda r, lim: f"TTFT {r.ttft_ms:.0f} ms > max {lim:g} ms", _over),\n')

SCRIPT = textwrap.dedent('''
    import asyncio, importlib.util, sys
    spec = importlib.util.find_spec("qadvisor.schemas.limits")
    source = open(spec.origin).read()
    assert source.count("\\n)\\n\\n\\ndef missed") == 1
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source.replace("\\n)\\n\\n\\ndef missed", "\\n" + ROW + ")\\n\\n\\ndef missed"), spec.origin, "exec"),
         module.__dict__)

    from qadvisor.cli import build_parser, priorities_from_args
    from qadvisor.app.options import priority_options
    from qadvisor.core.advise.advisor import violations
    from qadvisor.errors import UserError
    from qadvisor.schemas.priorities import Limits, Priorities
    from qadvisor.schemas.result import TrialResult

    args = build_parser().parse_args(["--auto", "--max-ttft-ms", "250"])
    limits = priorities_from_args(args).limits
    assert limits.max_ttft_ms == 250, limits
    assert Priorities.model_validate({"limits": {"max_ttft_ms": 99}}).limits.max_ttft_ms == 99  # a profile's field
    try:
        priority_options(max_ttft_ms=-1)
        raise SystemExit("a negative limit was taken")
    except UserError as exc:
        assert exc.field == "max_ttft_ms" and "--max-ttft-ms must be above 0" in str(exc), exc
    slow = TrialResult(method="m", backend="b", bits=4, status="ok", size_bytes=1, decode_tok_s=9.0, ttft_ms=400.0)
    assert violations(slow, Limits(max_ttft_ms=250)) == ["TTFT 400 ms > max 250 ms"]

    import argparse
    from qadvisor.tui.app import QAdvisorApp
    from qadvisor.tui.launch import tui_inputs

    async def form():
        app = QAdvisorApp(**vars(tui_inputs(argparse.Namespace(model=None, load=None))))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            app.screen.query_one("#max_ttft_ms").value = "120"
            assert app.priorities_from(app.screen.form()).limits.max_ttft_ms == 120
    asyncio.run(form())
    print("found everywhere")
''')


def test_a_limit_added_as_one_row_is_found_everywhere():
    done = subprocess.run([sys.executable, "-c", f"ROW = {ROW!r}\n" + SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "found everywhere" in done.stdout, done.stderr[-3000:]
