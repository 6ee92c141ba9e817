"""A JSON Schema (draft 2020-12) of a protobuf message's canonical proto3 JSON form, from its descriptor.

It describes exactly what :func:`faceflow.kafka.json_mirror.to_json` writes, so a consumer of the
JSON mirror can validate records or generate types without protobuf:

* field names are the JSON names (camelCase); every field without presence (scalars, enums,
  repeated, maps) is always printed, so it is ``required``; message fields and oneof members are
  printed only when set;
* 32-bit integers are JSON integers within their range; 64-bit integers are decimal strings;
  floats are numbers or ``"NaN"``/``"Infinity"``/``"-Infinity"``; bytes are base64 strings;
  enums are their value names;
* each message and enum is one entry of ``$defs``, named by its full name (``$ref`` handles the
  recursive ones); ``Timestamp`` and ``Duration`` are strings (RFC 3339 in UTC, ``"1.5s"``), and
  the other well-known types follow their JSON mappings;
* unknown properties are refused (``additionalProperties: false``), as protobuf's JSON parsers do
  unless told to ignore unknown fields.

The walk reads the compiled descriptors (the bytes the services encode with), never a second compile
of ``protos/``, so the schema cannot drift from the messages.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

__all__ = ["DRAFT_2020_12", "message_json_schema"]

DRAFT_2020_12: Final[str] = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

_FLOAT: Final[Schema] = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
_INT32: Final[Schema] = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32: Final[Schema] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_INT64: Final[Schema] = {"type": "string", "pattern": "^-?[0-9]+$"}
_UINT64: Final[Schema] = {"type": "string", "pattern": "^[0-9]+$"}
_BOOL: Final[Schema] = {"type": "boolean"}
_STRING: Final[Schema] = {"type": "string"}
_BYTES: Final[Schema] = {
    "type": "string",
    "contentEncoding": "base64",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}

_SCALARS: Final[dict[int, Schema]] = {
    FieldDescriptor.TYPE_DOUBLE: _FLOAT,
    FieldDescriptor.TYPE_FLOAT: _FLOAT,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_BOOL: _BOOL,
    FieldDescriptor.TYPE_STRING: _STRING,
    FieldDescriptor.TYPE_BYTES: _BYTES,
}

_F = FieldDescriptor
_SIGNED: Final = (
    _F.TYPE_INT64,
    _F.TYPE_SINT64,
    _F.TYPE_SFIXED64,
    _F.TYPE_INT32,
    _F.TYPE_SINT32,
    _F.TYPE_SFIXED32,
)
_UNSIGNED: Final = (_F.TYPE_UINT64, _F.TYPE_FIXED64, _F.TYPE_UINT32, _F.TYPE_FIXED32)
#: Map keys are JSON object keys, so strings: integers in decimal, booleans as "true"/"false".
_KEY_NAMES: Final[dict[int, Schema]] = {
    _F.TYPE_BOOL: {"enum": ["true", "false"]},
    **{t: {"pattern": "^-?[0-9]+$"} for t in _SIGNED},
    **{t: {"pattern": "^[0-9]+$"} for t in _UNSIGNED},
}

#: The well-known types' own JSON mappings (https://protobuf.dev/programming-guides/json/).
_WELL_KNOWN: Final[dict[str, Schema]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$",
    },
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "required": ["@type"], "properties": {"@type": _STRING}},
    "google.protobuf.DoubleValue": _FLOAT,
    "google.protobuf.FloatValue": _FLOAT,
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.BoolValue": _BOOL,
    "google.protobuf.StringValue": _STRING,
    "google.protobuf.BytesValue": _BYTES,
}


def _ref(full_name: str) -> Schema:
    return {"$ref": f"#/$defs/{full_name}"}


class _Walker:
    """Collects the ``$defs`` of every message and enum reachable from a root message."""

    def __init__(self) -> None:
        self.defs: dict[str, Schema] = {}

    def message(self, descriptor: Descriptor) -> Schema:
        name = descriptor.full_name
        if name not in self.defs:
            self.defs[name] = {}  # placeholder first: a recursive message refers to itself
            self.defs[name] = self._message_body(descriptor)
        return _ref(name)

    def enum(self, descriptor: EnumDescriptor) -> Schema:
        if descriptor.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if descriptor.full_name not in self.defs:
            self.defs[descriptor.full_name] = {
                "title": descriptor.full_name,
                "type": "string",
                "enum": [value.name for value in descriptor.values],
            }
        return _ref(descriptor.full_name)

    def _message_body(self, descriptor: Descriptor) -> Schema:
        known = _WELL_KNOWN.get(descriptor.full_name)
        if known is not None:
            return {"title": descriptor.full_name, **known}
        if descriptor.full_name.startswith("google.protobuf."):
            raise ValueError(
                f"expected a message with a known proto3 JSON mapping, got {descriptor.full_name}"
            )
        fields = sorted(descriptor.fields, key=lambda f: f.number)
        body: Schema = {
            "title": descriptor.full_name,
            "type": "object",
            "properties": {f.json_name: self._field(f) for f in fields},
            "additionalProperties": False,
        }
        required = [f.json_name for f in fields if not f.has_presence]
        if required:
            body["required"] = required
        exclusive = _oneof_exclusions(descriptor)
        if exclusive:
            body["dependentSchemas"] = exclusive
        return body

    def _field(self, field: FieldDescriptor) -> Schema:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            out: Schema = {"type": "object", "additionalProperties": self._single(value)}
            names = _KEY_NAMES.get(key.type)
            if names is not None:
                out["propertyNames"] = names
            return out
        if field.is_repeated:
            return {"type": "array", "items": self._single(field)}
        return self._single(field)

    def _single(self, field: FieldDescriptor) -> Schema:
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            return self.message(field.message_type)
        if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
            return self.enum(field.enum_type)
        scalar = _SCALARS.get(field.type)
        if scalar is None:  # TYPE_GROUP: proto2 only, never in faceflow's proto3 files
            raise ValueError(f"{field.full_name}: expected a proto3 field type, got type {field.type}")
        return dict(scalar)


def _oneof_exclusions(descriptor: Descriptor) -> Schema:
    """At most one member of each oneof is printed: each member forbids its siblings. A oneof of one
    field (proto3 ``optional``) needs no rule."""
    out: Schema = {}
    for oneof in descriptor.oneofs:
        if len(oneof.fields) < 2:
            continue
        for member in oneof.fields:
            others = [{"required": [o.json_name]} for o in oneof.fields if o is not member]
            out[member.json_name] = {"not": {"anyOf": others}}
    return out


def message_json_schema(descriptor: Descriptor, *, description: str = "") -> Schema:
    """The JSON Schema document of ``descriptor``'s canonical proto3 JSON (see the module docstring).

    Raises:
        ValueError: the message uses a proto2 group or a ``google.protobuf`` type with no JSON mapping.
    """
    walker = _Walker()
    root = walker.message(descriptor)
    document: Schema = {
        "$schema": DRAFT_2020_12,
        "title": f"{descriptor.full_name} (proto3 JSON)",
    }
    if description:
        document["description"] = description
    document |= root
    document["$defs"] = dict(sorted(walker.defs.items()))
    return document
