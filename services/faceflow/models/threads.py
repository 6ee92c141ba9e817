"""How the CPU models use threads: one setting, sized for the cores this process may run on.

Every onnxruntime session of the served models (CenterFace in ``face_detect`` / ``face_detector``,
FaceXFormer in ``facexformer``) is made by :func:`session_options`, so they agree:

* **intra-op threads**: the model config's ``cpu_threads`` (``faceflow models build --threads``),
  else ``$FACEFLOW_CPU_THREADS``, else the cores this process may run on
  (``os.sched_getaffinity``, which honours a container's CPU set; ``os.cpu_count()`` where that is
  missing). On the CPU variant one session computes at a time (the analyzer calls Triton with
  ``concurrency`` 1), so each may use every core.
* **one inter-op thread, sequential execution**: the graphs are chains; parallel branches only add
  threads that compete with the other processes.
* **no spinning**: by default onnxruntime's idle workers spin for a while after each operator,
  waiting for the next one. With the python-backend stubs, the broker and three services sharing
  two cores, that spinning takes the cores the next step needs. ``$FACEFLOW_CPU_SPIN=1`` turns it
  back on (a machine where the model has the cores to itself).

None of this changes a result: the same graph on the same thread count gives the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

THREADS_ENV: Final[str] = "FACEFLOW_CPU_THREADS"
SPIN_ENV: Final[str] = "FACEFLOW_CPU_SPIN"


def usable_cpus() -> int:
    """The cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def intra_op_threads(requested: int = 0, env: Mapping[str, str] | None = None) -> int:
    """The intra-op thread count for ``requested`` (0: ``$FACEFLOW_CPU_THREADS``, else the cores).

    Raises:
        ValueError: ``requested`` < 0, or the variable is not an int >= 1.
    """
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"cpu_threads: expected an int >= 0 (0: sized for the cores), got {requested!r}")
    if requested:
        return requested
    raw = (os.environ if env is None else env).get(THREADS_ENV, "").strip()
    if not raw:
        return usable_cpus()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV}: expected an int >= 1, got {raw!r}")
    return value


def spinning(env: Mapping[str, str] | None = None) -> bool:
    """Whether idle onnxruntime workers spin (``$FACEFLOW_CPU_SPIN``: 1/true/yes; default off)."""
    return (os.environ if env is None else env).get(SPIN_ENV, "").strip().lower() in ("1", "true", "yes")


def session_options(requested: int = 0, *, env: Mapping[str, str] | None = None) -> Any:
    """``onnxruntime.SessionOptions`` for a served CPU model (see the module docstring).

    Raises:
        ValueError: a bad thread count (see :func:`intra_op_threads`).
    """
    import onnxruntime as ort  # noqa: PLC0415 - the adapter edge

    options = ort.SessionOptions()
    options.log_severity_level = 3  # CenterFace's file has unused BN initializers ORT warns about
    options.intra_op_num_threads = intra_op_threads(requested, env)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if spinning(env) else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options
