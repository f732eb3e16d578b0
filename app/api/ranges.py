"""A stored file as an HTTP answer, with byte ranges (RFC 9110 §14), so that a client
can resume a large download where a dropped connection left it.

Every answer says ``Accept-Ranges: bytes`` and carries a strong ``ETag`` (from the
file's size and its store's version stamp). ``Range: bytes=a-b``, ``bytes=a-`` and
``bytes=-n`` answer 206 with ``Content-Range``; a range past the end answers 416 with
``Content-Range: bytes */size``. Several ranges at once (``bytes=0-1,5-6``) and a
malformed header are answered with the whole file (200), as the RFC allows: a resuming
client asks for one. ``If-Range`` with another ETag (the file changed since the first
part) answers the whole file too, so the client starts over instead of splicing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from app.api.errors import ApiError
from core.artifacts import ArtifactStore

_SPEC = re.compile(r"bytes=(\d*)-(\d*)")
_BLOCK = 1 << 20
#: OpenAPI: what the download routes answer beside 200
RANGE_RESPONSES = {
    206: {"description": "the bytes a Range asked for (Content-Range says which)"},
}


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte ``header`` asks for, inclusive; None for the whole file.
    ``ApiError`` 416 when the range lies past the end."""
    m = _SPEC.fullmatch((header or "").replace(" ", ""))
    if m is None or m.group(1) == m.group(2) == "":  # no range, several, or malformed
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = size - 1 if not last else min(int(last), size - 1)
        if last and int(last) < start:
            return None  # "bytes=5-2" is invalid, hence ignored (RFC 9110 §14.1.1)
        if start >= size:
            raise _unsatisfiable(size)
        return start, end
    suffix = int(last)  # "bytes=-n": the last n bytes
    if suffix == 0 or size == 0:
        raise _unsatisfiable(size)
    return max(0, size - suffix), size - 1


def file_response(artifacts: ArtifactStore, key: str, *, media_type: str, filename: str,
                  range_header: str | None, if_range: str | None) -> StreamingResponse:
    size, stamp = artifacts.version(key)
    etag = '"' + hashlib.sha256(f"{key}\0{size}\0{stamp}".encode()).hexdigest()[:32] + '"'
    headers = {"Content-Disposition": f'attachment; filename="{filename}"',
               "Accept-Ranges": "bytes", "ETag": etag}
    # If-Range holding a date, or another ETag: the file may have changed, send it whole
    span = byte_range(range_header, size) if if_range in (None, etag) else None
    if span is None:
        return StreamingResponse(_read(artifacts, key, 0, size), media_type=media_type,
                                 headers={**headers, "Content-Length": str(size)})
    start, end = span
    return StreamingResponse(
        _read(artifacts, key, start, end - start + 1), status_code=206, media_type=media_type,
        headers={**headers, "Content-Length": str(end - start + 1),
                 "Content-Range": f"bytes {start}-{end}/{size}"})


def _read(artifacts: ArtifactStore, key: str, start: int, length: int) -> Iterator[bytes]:
    with artifacts.open_read(key) as fh:
        if start:
            fh.seek(start)
        while length > 0 and (block := fh.read(min(_BLOCK, length))):
            length -= len(block)
            yield block


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "range_not_satisfiable", f"the file has {size:,} bytes; the Range "
                    "asks for bytes past its end", headers={"Content-Range": f"bytes */{size}"},
                    size=size)
