"""A multipart/form-data body read part by part as it arrives, for the upload route.

Starlette's form parser (what FastAPI's ``UploadFile`` parameters use) spools a file part
to a temporary file and hands it over only once the whole body is in; the route then
copied it into the artifact store, so an upload took twice its size on disk while it
arrived. Here the route gets the file's bytes as they stream in and writes them straight
into the store: one copy, and every limit applies while the bytes arrive.

The parsing itself is python-multipart's (the parser Starlette uses); this module only
turns its callbacks into a stream of parts.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.api.errors import MULTIPART_HEADER_LIMIT, ApiError


@dataclass(frozen=True, slots=True)
class FileStart:
    """The file part begins; its bytes follow as ``FileData``."""

    filename: str


@dataclass(frozen=True, slots=True)
class FileData:
    data: bytes


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    value: str


Part = FileStart | FileData | FormField


def _bad(reason: str) -> ApiError:
    return ApiError(400, "invalid_multipart", f"the multipart body could not be read: "
                    f"{reason}", limit=MULTIPART_HEADER_LIMIT)


class _Collector:
    """python-multipart's callbacks, recorded as parts in the order they came."""

    def __init__(self, file_field: str, charset: str, max_fields: int,
                 max_field_bytes: int) -> None:
        self.file_field, self.charset = file_field, charset
        self.max_fields, self.max_field_bytes = max_fields, max_field_bytes
        self.out: list[Part] = []
        self.fields = 0
        self.had_file = False
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        #: the closing boundary was read: a body cut short never is (python-multipart's
        #: finalize() checks nothing), and its file must not be kept as if whole
        self.ended = False

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._is_file = b"", None, False
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise _bad('a part\'s Content-Disposition has no "name"')
        self._name = self._decode(options[b"name"])
        if b"filename" in options:
            if self._name != self.file_field:
                raise ApiError(422, "invalid_options", f"unexpected file field "
                               f"{self._name[:100]!r}; the file goes in {self.file_field!r}",
                               field=self._name[:100])
            if self.had_file:
                raise ApiError(422, "invalid_options", "one file per upload",
                               field=self.file_field)
            self.had_file, self._is_file = True, True
            self.out.append(FileStart(self._decode(options[b"filename"])))
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise ApiError(422, "invalid_options", f"more than {self.max_fields} form "
                               "fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.out.append(FileData(data[start:end]))
            return
        self._value += data[start:end]
        if len(self._value) > self.max_field_bytes:
            raise ApiError(422, "invalid_options", f"form field {self._name!r} is longer "
                           f"than {self.max_field_bytes:,} bytes", field=self._name)

    def on_part_end(self) -> None:
        if not self._is_file and self._name is not None:
            self.out.append(FormField(self._name, self._decode(bytes(self._value))))

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end", "on_end")}


async def read_parts(request: Request, *, file_field: str = "file", max_fields: int = 32,
                     max_field_bytes: int = 64 * 1024) -> AsyncIterator[Part]:
    """The parts of ``request``'s multipart body, as they arrive: fields whole, the file
    (at most one, under ``file_field``) as a ``FileStart`` then its ``FileData`` chunks.
    A body that is not multipart, or malformed, is a 400 ``invalid_multipart``."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise ApiError(400, "invalid_multipart", "the upload must be a multipart/form-data "
                       f"body with a {file_field!r} file part")
    if b"boundary" not in params:
        raise _bad("the Content-Type has no boundary")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    parts = _Collector(file_field, charset, max_fields, max_field_bytes)
    try:
        # in the try: python-multipart refuses a boundary over 256 bytes here
        parser = MultipartParser(params[b"boundary"], parts.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
            for part in parts.out:
                yield part
            parts.out.clear()
        parser.finalize()
    except FormParserError as exc:
        raise _bad("a part's headers are malformed or too long (a header line, with its "
                   f"file name, is at most {MULTIPART_HEADER_LIMIT} bytes), or the "
                   "boundary is") from exc
    for part in parts.out:
        yield part
    if not parts.ended:
        raise _bad("the body ends before its closing boundary (cut short?)")
