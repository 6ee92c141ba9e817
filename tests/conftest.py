"""Shared fixtures: a real local runtime (Kafka broker + Triton) on free ports for the test session.

The runtime lives in a temporary FACEFLOW_HOME so tests never touch a developer's running
``faceflow dev up``; the downloaded jars, the tritonserver wheel and Triton's model environment
come from the shared cache (``$FACEFLOW_CACHE`` or ``<repo>/.faceflow/cache``), which
``make test`` fills first. Set ``FACEFLOW_TEST_KAFKA_BOOTSTRAP`` / ``FACEFLOW_TEST_TRITON_URL`` to
run the integration tests against components that already run elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from support_runtime import free_port_settings

from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import DevStack, require_ready


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevSettings]:
    """A real Kafka broker and Triton server for the whole session, stopped at the end."""
    settings = free_port_settings(tmp_path_factory.mktemp("faceflow-home"))
    stack = DevStack(settings)
    try:
        require_ready(stack.up(quiet=True))
        yield settings
    finally:
        stack.down(quiet=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(runtime: DevSettings) -> str:
    return runtime.kafka_bootstrap


@pytest.fixture(scope="session")
def triton_url(runtime: DevSettings) -> str:
    return runtime.triton_grpc_url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group name unique to this test run (tests share one broker)."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"test.{safe}.{uuid.uuid4().hex[:8]}"
