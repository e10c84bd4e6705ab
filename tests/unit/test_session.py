"""Every measuring run shows its callers one face (core.measure.session.Session): the run here, the cluster run and
the TUI tests' replay of recorded events all implement it, so a face can drive any of them."""

import typing

from qadvisor.core.measure.session import Session


def _members() -> set[str]:
    methods = {name for name, value in vars(Session).items() if callable(value) and not name.startswith("_")}
    return methods | set(typing.get_type_hints(Session))


def test_the_run_here_is_a_session():
    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.jobs import EvalSettings
    from qadvisor.core.measure.runner import Run, RunRequest

    run = Run(RunRequest(methods=["fp32"], settings=EvalSettings(threads=1)), detect())
    assert isinstance(run, Session)


def test_the_cluster_run_is_a_session():
    from qadvisor.core.cluster.driver import ClusterRun

    missing = {name for name in _members() if not hasattr(ClusterRun, name)}  # properties and methods, no Ray needed
    assert missing == set()


def test_the_tui_tests_replay_is_a_session():
    from tests.tui.test_snapshots import ScriptedRun

    assert isinstance(ScriptedRun(None), Session)


def test_a_run_without_a_member_is_not_a_session():
    class NoExport:
        recipes, model_path, device_label, reference = [], None, "", None

        def trial_names(self):
            return []

        def events(self, cancel=None):
            return iter(())

    assert _members() >= {"recipes", "model_path", "device_label", "reference", "trial_names", "events", "export"}
    assert not isinstance(NoExport(), Session)
