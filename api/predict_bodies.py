"""Prediction request bodies, decoded in a worker thread (never on the event loop): one raw image,
the files of a multipart body, or the base64 instances of a JSON body; the image count is capped
before anything is decoded."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from platform_core.errors import BadRequest, Invalid, UnsupportedMediaType
from platform_core.registry.schemas import PredictJson

IMAGE_TYPES = ("application/dicom", "image/png", "image/jpeg", "application/octet-stream")
MEDIA_TYPES = "application/dicom, image/png, image/jpeg, multipart/form-data or JSON"


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its $defs inlined, to sit inside an OpenAPI operation."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    inlined: dict[str, Any] = walk(schema)
    return inlined


BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": _inlined(PredictJson.model_json_schema())},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        **{media: BINARY for media in ("application/dicom", "image/png", "image/jpeg")},
    },
}


def media_type(content_type: str) -> str:
    """The body's media type, refused (415) before the body is read when no decoder takes it."""
    media = content_type.split(";")[0].strip().lower()
    if media in IMAGE_TYPES or media == "multipart/form-data" or media == "application/json":
        return media
    if media.endswith("+json"):
        return "application/json"
    raise UnsupportedMediaType(f"send {MEDIA_TYPES}, not '{media or 'nothing'}'")


def decode_bodies(content_type: str, raw: bytes, max_images: int) -> list[bytes]:
    media = media_type(content_type)
    if media in IMAGE_TYPES:
        if not raw:
            raise Invalid("the body is empty", param="file")
        return [raw]
    if media == "multipart/form-data":
        return _multipart_files(content_type, raw, max_images)
    return _json_instances(raw, max_images)


def _too_many(count: int, limit: int, param: str) -> Invalid:
    return Invalid(
        f"{count} images in one request; the limit is {limit} (MEDTUNE_MAX_PREDICT_INSTANCES): send "
        "them in several requests or as a batch prediction",
        param=param,
    )


def _json_instances(raw: bytes, max_images: int) -> list[bytes]:
    try:
        body = PredictJson.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        raise Invalid(message, param=param) from None
    if len(body.instances) > max_images:
        raise _too_many(len(body.instances), max_images, "instances")
    out = []
    for i, inst in enumerate(body.instances):
        encoded = inst.dicom_base64 or inst.image_base64
        if not encoded or (inst.dicom_base64 and inst.image_base64):
            raise Invalid("each instance has one of dicom_base64 or image_base64", param=f"instances.{i}")
        try:
            out.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise Invalid("not valid base64", param=f"instances.{i}") from None
    return out


class _FileParts:
    """Collects the file parts (those with a filename) of a multipart body, counting every part
    as it begins so a body of countless tiny parts stops at the cap."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.max_parts = max_images + 8  # a few form fields may sit beside the files
        self.parts = 0
        self.files: list[bytes] = []
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise Invalid(
                f"the multipart body has more than {self.max_parts} parts; a request carries at most "
                f"{self.max_images} images (MEDTUNE_MAX_PREDICT_INSTANCES)",
                param="file",
            )
        self._headers, self._data = {}, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_part_end(self) -> None:
        _disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in options:
            self.files.append(bytes(self._data))
        self._data = bytearray()


def _multipart_files(content_type: str, raw: bytes, max_images: int) -> list[bytes]:
    _kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart/form-data body has no boundary", param="file")
    collector = _FileParts(max_images)
    parser = MultipartParser(boundary, {
        "on_part_begin": collector.on_part_begin, "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end, "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value, "on_header_end": collector.on_header_end,
    })  # fmt: skip
    try:
        parser.write(raw)
        parser.finalize()
    except Invalid:
        raise
    except Exception:  # python-multipart's own parse errors
        raise BadRequest(
            "the multipart body could not be parsed (its framing or boundary)", param="file"
        ) from None
    if len(collector.files) > max_images:
        raise _too_many(len(collector.files), max_images, "file")
    if not collector.files:
        raise Invalid("the multipart body holds no files", param="file")
    return collector.files
