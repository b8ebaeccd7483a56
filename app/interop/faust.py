"""faust-streaming interop: a codec for Vigil's Confluent-framed Avro and faust Records for the
Vigil schemas, so an existing faust app can consume and produce Vigil topics.

    import faust
    from app.interop.faust import register_codecs, Event

    register_codecs("http://127.0.0.1:8081")      # codecs "vigil" (any type) and "vigil.Event", ...
    app = faust.App("my-app", broker="kafka://127.0.0.1:9092")
    events = app.topic("events", key_type=str, value_type=Event, value_serializer="vigil.Event")

Decoding uses the writer schema named by each message's schema id (any registered type);
encoding a Record (or dict) uses the codec's record type, registered under its record-name subject.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers import codecs

from app.model.schemas import BUILTIN_SCHEMAS_DIR, builtin_schema, load_schema_dir
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient

__all__ = ["RECORDS", "Alert", "Event", "Status", "VigilAvroCodec", "faust_record", "register_codecs"]


class VigilAvroCodec(codecs.Codec):
    """faust Codec: bytes in Confluent wire format <-> dicts (Records are dumped via asdict)."""

    def __init__(self, serde: AvroSerde, fullname: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.serde = serde
        self.fullname = fullname

    def _loads(self, s: bytes) -> Any:
        try:
            return self.serde.decode(s)
        except DecodeError as exc:
            raise ValueError(str(exc)) from exc  # faust reports ValueError as a decode error

    def _dumps(self, obj: Any) -> bytes:
        if self.fullname is None:
            raise ValueError("the generic 'vigil' codec only decodes; use the codec named after the record type")
        record = obj.asdict() if isinstance(obj, faust.Record) else dict(obj)
        return self.serde.encode(record, builtin_schema(self.fullname))


_AVRO_TO_PY: dict[str, Any] = {"string": str, "long": int, "int": int, "double": float, "float": float,
                               "boolean": bool, "bytes": bytes}


def _field_type(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        inner = [t for t in avro_type if t != "null"]
        base = _field_type(inner[0]) if len(inner) == 1 else Any
        return base | None if "null" in avro_type and base is not Any else base
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        # Types built at run time from the schema (faust reads them); no static type to check.
        if kind == "map":
            return dict.__class_getitem__((str, _field_type(avro_type["values"])))
        if kind == "array":
            return list.__class_getitem__(_field_type(avro_type["items"]))
        if kind == "enum":
            return str
        return Any
    return _AVRO_TO_PY.get(avro_type, Any)


def faust_record(fullname: str) -> type[faust.Record]:
    """A faust.Record class mirroring one of Vigil's Avro record schemas (fields, types, defaults)."""
    schema = builtin_schema(fullname)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations, "__doc__": f"faust Record for {fullname}"}
    # faust needs fields with defaults after those without.
    fields = sorted(schema.parsed["fields"], key=lambda f: "default" in f)
    for f in fields:
        annotations[f["name"]] = _field_type(f["type"])
        if "default" in f:
            default = f["default"]
            namespace[f["name"]] = dict(default) if isinstance(default, dict) else default
    return type(fullname.rsplit(".", 1)[-1], (faust.Record,), namespace, serializer=fullname,
                include_metadata=False)


#: faust Records for every built-in Vigil schema, by full name.
RECORDS: dict[str, type[faust.Record]] = {name: faust_record(name) for name in load_schema_dir(BUILTIN_SCHEMAS_DIR)}


def register_codecs(registry_url: str) -> AvroSerde:
    """Register faust codecs: "vigil" (decode any registered type) and one per Vigil record type."""
    serde = AvroSerde(RegistryClient(registry_url))
    codecs.register("vigil", VigilAvroCodec(serde))
    for name in RECORDS:
        codecs.register(name, VigilAvroCodec(serde, name))
    return serde


Event = RECORDS["vigil.Event"]
Alert = RECORDS["vigil.Alert"]
Status = RECORDS["vigil.Status"]
