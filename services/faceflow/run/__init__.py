"""faceflow run and the demo: orchestration and outputs."""
