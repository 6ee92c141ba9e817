"""The exception root of the faceflow package.

Two kinds of failure exist (STYLE.md #7): a failure of one message becomes data (a DLQ record, an
error field, a gRPC status); an unrecoverable failure raises a subclass of :class:`FaceflowError`
and stops the process. The CLI turns any ``FaceflowError`` into a one-paragraph message for the
user instead of a stack trace.
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
