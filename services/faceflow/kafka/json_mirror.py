"""The JSON form of a faceflow record value: canonical proto3 JSON, UTF-8 (the faces JSON mirror).

One function owns the encoding, so the aggregator, ``faceflow schema`` and the tests agree on it:
camelCase field names, every field without presence printed (zeros, empty lists), 64-bit integers
as strings, enums by name, ``Timestamp``/``Duration`` as RFC 3339 / ``"1.5s"`` strings and bytes as
base64. That is what protobuf-java's ``JsonFormat.parser()``, Go's ``protojson`` and
``google.protobuf.json_format.Parse`` read back into the same message, and what Kafka Connect's
``JsonConverter`` (``schemas.enable=false``), ksqlDB's ``VALUE_FORMAT='JSON'`` and Flink's ``json``
format read without a schema registry.
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["to_json"]


def to_json(message: Message) -> bytes:
    """``message`` as canonical proto3 JSON on one line, UTF-8 (see the module docstring).

    Non-ASCII characters are ``\\uXXXX`` escapes (``MessageToJson``'s default), so the bytes are also
    plain ASCII: any JSON reader decodes them to the same text.
    """
    text = json_format.MessageToJson(message, indent=None, always_print_fields_with_no_presence=True)
    return text.encode("utf-8")
