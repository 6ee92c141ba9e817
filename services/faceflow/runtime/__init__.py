"""The local runtime: a real Kafka broker and a real Triton server on this machine.

``faceflow dev up | down | status`` (see :mod:`faceflow.runtime.cli`) starts Apache Kafka 4.x in
KRaft combined mode from the broker's Maven jars and the ``tritonserver`` binary that the
``nvidia-pytriton`` wheel bundles, serving ``triton_repo/``. An external broker or server is used
instead when ``FACEFLOW_KAFKA_BOOTSTRAP`` / ``FACEFLOW_TRITON_URL`` is set.
"""
