"""The CPU models' thread settings: sized for the cores, overridable, no spinning by default."""

from __future__ import annotations

import os

import onnxruntime as ort
import pytest

from faceflow.models.threads import THREADS_ENV, intra_op_threads, session_options, spinning, usable_cpus


def test_usable_cpus_is_this_process_cpu_set() -> None:
    assert usable_cpus() == len(os.sched_getaffinity(0)) >= 1


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        (3, {THREADS_ENV: "5"}, 3),  # the model config's value wins
        (0, {THREADS_ENV: "5"}, 5),
        (0, {THREADS_ENV: " "}, None),  # None: the usable cores
        (0, {}, None),
    ],
)
def test_intra_op_threads(requested: int, env: dict[str, str], expected: int | None) -> None:
    assert intra_op_threads(requested, env) == (usable_cpus() if expected is None else expected)


@pytest.mark.parametrize(
    ("requested", "env", "message"),
    [
        (-1, {}, "cpu_threads: expected an int >= 0"),
        (0, {THREADS_ENV: "0"}, "FACEFLOW_CPU_THREADS: expected an int >= 1, got '0'"),
        (0, {THREADS_ENV: "two"}, "FACEFLOW_CPU_THREADS: expected an int >= 1, got 'two'"),
    ],
)
def test_bad_thread_counts_say_which_setting(requested: int, env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        intra_op_threads(requested, env)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True), ("yes", True)])
def test_spinning_is_off_unless_asked(value: str, expected: bool) -> None:
    assert spinning({"FACEFLOW_CPU_SPIN": value}) is expected


def test_session_options_sequential_one_inter_op_thread_no_spin() -> None:
    options = session_options(0, env={THREADS_ENV: "3"})
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spun = session_options(2, env={"FACEFLOW_CPU_SPIN": "1"})
    assert spun.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert spun.intra_op_num_threads == 2
