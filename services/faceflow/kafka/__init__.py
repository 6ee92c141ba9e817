"""Kafka adapters: admin (topics), producer and consumer factories with faceflow's delivery defaults.

Everything that imports ``kafka`` (kafka-python) lives here; the pure core never does (STYLE #1).
"""
