"""``faceflow aggregator``: analyses -> tracks, identities and fused results -> faces topic and gRPC.

Stateful per stream; owns streams by the analyses topic's partitions and hands their state over
through the compacted state topic. See docs/aggregator.md.
"""
