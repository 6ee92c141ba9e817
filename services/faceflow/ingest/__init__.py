"""The pure core of the ingest service: sources -> sampled, size-bounded JPEG frames.

Modules, in data-path order: :mod:`.sources` decodes files, URLs and image folders into
:class:`~.frames.DecodedFrame`; :mod:`.sampling` picks frames by timestamp; :mod:`.encode` bounds
their size and JPEG-encodes them into :class:`~.frames.EncodedFrame`; :mod:`.backpressure` sits
between decoding and the Kafka producer; :mod:`.reconnect` keeps live sources alive. Kafka and gRPC
adapters plug in on top of these and are not imported here.
"""
