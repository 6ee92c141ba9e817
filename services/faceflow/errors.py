"""The exception root of the faceflow package, and the two kinds of failure.

Two kinds of failure exist (STYLE.md #7):

* **A failure of one request or message** becomes data: a DLQ record, an error field, a gRPC
  status. Those exceptions derive from :class:`RequestError`, through one of the classes below
  that name the gRPC status code they become (:class:`InvalidArgument` -> ``INVALID_ARGUMENT``
  ...). The shared gRPC scaffold (:mod:`faceflow.service.grpc_server`) maps them with one table,
  so every service answers the same failure with the same code.
* **An unrecoverable failure** raises :class:`FatalError` (or another :class:`FaceflowError`
  outside a request) and stops the process, failing readiness first. The CLI turns any
  ``FaceflowError`` into a one-paragraph message instead of a stack trace.

Each package keeps its own root under :class:`FaceflowError` (``IngestError``, ...) and mixes in
the request class that fits, e.g. ``class SourceExists(IngestError, AlreadyExists)``.
"""

from __future__ import annotations


class FaceflowError(Exception):
    """Root of every exception faceflow raises on purpose."""


class ConfigError(FaceflowError):
    """A configuration value is missing or invalid."""


class RuntimeStartError(FaceflowError):
    """A local runtime component (Kafka broker, Triton server) could not be started."""


class PrerequisiteError(FaceflowError):
    """A tool the local runtime needs (Java 17+, Maven) is missing or too old."""


class FatalError(FaceflowError):
    """The process cannot go on: it stops, reporting NOT_SERVING first, and exits non-zero."""


class ServiceStartError(FatalError):
    """A service could not start (a port taken, a broker or topic missing)."""


# --- Per-request failures: each becomes the gRPC status its class names ---------------------------


class RequestError(FaceflowError):
    """One request or message is refused; the service goes on. Becomes a status, never a crash."""


class InvalidArgument(RequestError, ValueError):
    """The request is malformed or a value is out of range (``INVALID_ARGUMENT``)."""


class NotFound(RequestError):
    """What the request names does not exist (``NOT_FOUND``)."""


class AlreadyExists(RequestError):
    """What the request would create exists already (``ALREADY_EXISTS``)."""


class ResourceExhausted(RequestError):
    """A size, count or rate limit was reached (``RESOURCE_EXHAUSTED``)."""


class FailedPrecondition(RequestError):
    """The system is not in a state that allows the request (``FAILED_PRECONDITION``)."""


class PermissionDenied(RequestError):
    """The caller may not do this (``PERMISSION_DENIED``)."""


class Unauthenticated(RequestError):
    """The caller did not prove who it is (``UNAUTHENTICATED``)."""


class Unavailable(RequestError):
    """A dependency (broker, Triton) cannot serve now, or the service is stopping; retry later
    (``UNAVAILABLE``)."""


class DeadlineExceeded(RequestError):
    """The request's deadline passed before the work was done (``DEADLINE_EXCEEDED``)."""
