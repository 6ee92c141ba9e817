"""Where the brokers are: the mesh-wide variable every service and CLI reads, and its default.

Standard library only (no kafka-python), so a configuration or ``--help`` can import it cheaply.
"""

from __future__ import annotations

#: The mesh-wide variable naming the brokers (``host:port[,host:port...]``).
KAFKA_BOOTSTRAP_ENV = "FACEFLOW_KAFKA_BOOTSTRAP"
#: The brokers when the variable and the flag are unset: ``faceflow dev up``'s broker.
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
