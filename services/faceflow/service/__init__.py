"""What every faceflow service shares: the gRPC server scaffold, the main loop, metrics, the config
loader, the Triton client and the consume -> process -> produce loop.

A service (``faceflow.ingest``, ``faceflow.analyzer``, ``faceflow.aggregator``) holds only its own
logic and is built from these pieces, so that plumbing is written once.
"""
