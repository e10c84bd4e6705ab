import subprocess
import sys


def test_core_and_cli_do_not_import_textual_or_heavy_backends():
    code = (
        "import sys, qadvisor.core.runner, qadvisor.core.hardware, qadvisor.cli, qadvisor.console;"
        "from qadvisor.quantizers import registry; registry.methods();"
        "bad = [m for m in ('textual', 'bitsandbytes', 'gptqmodel', 'hqq', 'optimum.quanto', 'torchao') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
