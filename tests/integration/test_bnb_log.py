"""bitsandbytes' per-matmul warning is not part of bnb-int8's timed generation (quantizers.bnb)."""

from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.runner import Run, RunRequest


def test_bnb_int8_trial_says_once_that_it_mutes_the_cast_warning(tmp_path):
    request = RunRequest(methods=["bnb-int8"], cache_dir=tmp_path / "cache", work_dir=tmp_path / "work",
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    list(run.events())
    assert run.results[0].status == "ok", run.results[0].reason
    log = run.log_path("bnb-int8").read_text()  # kept in the cache after the run
    # without the mute: one line per linear per forward pass, thousands in a trial
    assert log.count("inputs will be cast from") == 0
    assert log.count("this warning is muted from here on") == 1
