"""The pure core of faceflow: tracking, MOT evaluation, identity matching, fusion, scheduling, quality,
shot cuts.

Everything under ``faceflow.core`` is plain computation over numbers: no I/O, no clocks, no
threads, no Kafka, gRPC, Triton, PyAV, PIL, torch or dlib. Its modules import only the standard
library, numpy, scipy and ``faceflow.core.*`` / ``faceflow.models.contract`` (an import-linter
contract keeps it so), which makes them fast to test and safe to run in any service.

- :mod:`faceflow.core.geometry`: box helpers (areas, centres, IoU matrices, clipping).
- :mod:`faceflow.core.motion`: the constant-velocity Kalman filter over boxes.
- :mod:`faceflow.core.association`: embedding distances and the gated optimal matching.
- :mod:`faceflow.core.tracking`: the per-stream multi-face tracker (``StreamTracker``).
- :mod:`faceflow.core.evaluation`: MOT metrics (IDF1, MOTA, ID switches) against ground truth.
- :mod:`faceflow.core.shots`: the shot-cut detector that ingest runs per stream (``shot_start_seq``).
- :mod:`faceflow.core.identity_metrics`: what a user judges naming by (named recall, false names,
  identities per person, persons per identity, same-frame shared identities, time to name).
"""
