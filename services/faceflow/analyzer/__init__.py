"""``faceflow analyzer``: frames topic -> Triton -> analyses topic, at least once, in micro-batches.

Stateless apart from soft scheduling state; scales with the frames topic's partitions.
See docs/analyzer.md.
"""
