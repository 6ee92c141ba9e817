"""faceflow: a streaming face-analytics mesh for live video.

Ingest services push frames through Kafka to a Triton-hosted ensemble (CenterFace detector,
FaceXFormer multi-task transformer, dlib identity embedder); an aggregator tracks identities and
emits per-face results to Kafka and gRPC clients. See README.md and docs/.
"""

__version__ = "0.1.0"
