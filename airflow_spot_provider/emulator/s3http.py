"""S3's REST API (path-style) over an :class:`~.s3store.ObjectStore`, in aiohttp.

The operations boto3, aiobotocore, the SageMaker SDK and the Amazon provider's ``S3Hook`` use:
ListBuckets, Create/Head/Delete/GetLocation of a bucket; Put/Get (ranges)/Head/Delete/Copy of an
object, DeleteObjects, ListObjects and ListObjectsV2 (prefix, delimiter, pagination,
``encoding-type=url``), and multipart uploads (Create, UploadPart, Complete, Abort). Any other
sub-resource (``?acl``, ``?versioning``, ``?cors``...) answers ``NotImplemented``. Requests may be
signed or not: ``Authorization`` is never read. ``aws-chunked`` bodies are decoded, trailers
(checksums) included.

A connection is kept alive only when the request's body was consumed to its declared end: an
error answered before it was read discards it first, and a body too large to discard, or one
refused before ``100 Continue`` (that the client then never sends), closes the connection, so
that no byte of a body is ever parsed as the start of the next request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from aiohttp import web

from airflow_spot_provider.emulator.guard import guard_middleware, refusal_reason
from airflow_spot_provider.emulator.s3store import (
    Listing,
    ObjectInfo,
    ObjectStore,
    S3Error,
    check_key,
    concat_blobs,
    copy_blob,
    remove_quietly,
)

log = logging.getLogger(__name__)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_OBJECT_BYTES = 5 * 1024**3  # S3's limit of one PUT (and of one part)
MIN_PART_BYTES = 5 * 1024**2
MAX_XML_BYTES = 2 * 1024 * 1024  # DeleteObjects (1,000 keys) and CompleteMultipartUpload bodies
# An unread body of an error answer up to this size is read and dropped (the connection stays
# usable); a larger one closes the connection.
MAX_DISCARD_BYTES = 64 * 1024 * 1024
_CHUNK = 256 * 1024
_STORED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
)
_SUBRESOURCES = frozenset(
    {
        "acl",
        "cors",
        "encryption",
        "lifecycle",
        "logging",
        "notification",
        "ownershipControls",
        "policy",
        "publicAccessBlock",
        "replication",
        "tagging",
        "versioning",
        "versions",
        "website",
        "accelerate",
        "analytics",
        "inventory",
        "metrics",
        "requestPayment",
        "restore",
        "select",
        "torrent",
        "object-lock",
        "legal-hold",
        "retention",
        "attributes",
        "intelligent-tiering",
    }
)
STORE_KEY: web.AppKey[ObjectStore] = web.AppKey("s3_store", ObjectStore)
REGION_KEY: web.AppKey[str] = web.AppKey("s3_region", str)
HOSTS_KEY: web.AppKey[frozenset[str]] = web.AppKey("s3_hosts", frozenset)
Operation = Callable[[web.Request, ObjectStore, str, str], Awaitable[web.StreamResponse]]


# -- answers ----------------------------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    request_id = uuid.uuid4().hex[:16].upper()
    return {"x-amz-request-id": request_id, "x-amz-id-2": request_id, **(extra or {})}


def _xml(root: str, body: str, status: int = 200) -> web.Response:
    document = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{S3_NS}">{body}</{root}>'
    return web.Response(
        body=document.encode(), status=status, headers=_headers({"Content-Type": "application/xml"})
    )


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def error_response(request: web.Request, err: S3Error) -> web.Response:
    """S3's XML error document (no body for HEAD).

    :param request: the request.
    :param err: the error.
    """
    if request.method == "HEAD":
        return web.Response(status=err.status, headers=_headers())
    fields = "".join(_el(k, v) for k, v in err.fields.items())
    body = f"{_el('Code', err.code)}{_el('Message', err.message)}{fields}"
    document = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>'
    return web.Response(
        body=document.encode(),
        status=err.status,
        headers=_headers({"Content-Type": "application/xml"}),
    )


def refuse(request: web.Request, reason: str) -> web.Response:
    """403 ``AccessDenied`` for a request the guard refuses.

    :param request: the request.
    :param reason: why.
    """
    return error_response(request, S3Error("AccessDenied", f"Access Denied: {reason}", 403))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": _http_date(info.modified),
        "Accept-Ranges": "bytes",
        "Content-Type": "binary/octet-stream",
    }
    headers.update(info.headers)
    return _headers(headers)


# -- request bodies ---------------------------------------------------------------------------


def _aws_chunked(request: web.Request) -> bool:
    """Whether a request's body is ``aws-chunked`` (signed or not, with trailers or not)."""
    sha = request.headers.get("x-amz-content-sha256", "")
    return sha.startswith("STREAMING-") or "aws-chunked" in request.headers.get(
        "Content-Encoding", ""
    )


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The payload of a request: plain, or decoded from ``aws-chunked``."""
    if not _aws_chunked(request):
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk
        return
    while True:
        line = await request.content.readline()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error("IncompleteBody", "The aws-chunked body is malformed.") from None
        if size == 0:
            await _skip_trailers(request)
            return
        remaining = size
        while remaining:
            data = await request.content.read(min(remaining, _CHUNK))
            if not data:
                raise S3Error("IncompleteBody", "The request body ended early.")
            remaining -= len(data)
            yield data
        await request.content.readexactly(2)


async def _skip_trailers(request: web.Request) -> None:
    """Read an ``aws-chunked`` body's trailers (checksums, not checked) to its empty last line."""
    while True:
        line = await request.content.readline()
        if not line:
            raise S3Error("IncompleteBody", "The request body ended early.")
        if not line.strip():
            return


def declared_size(request: web.Request) -> int | None:
    """The payload size a request declares (decoded, for ``aws-chunked``), or None.

    :param request: the request.
    """
    # An aws-chunked body's Content-Length counts its chunk headers and trailers too.
    text = request.headers.get(
        "x-amz-decoded-content-length" if _aws_chunked(request) else "Content-Length"
    )
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _too_large(limit: int) -> S3Error:
    return S3Error(
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed size",
        400,
        MaxSizeAllowed=str(limit),
    )


def _declared_too_large(request: web.Request) -> S3Error | None:
    """``EntityTooLarge`` when a request declares a payload past the limit, before reading it.

    :param request: the request.
    """
    if (declared_size(request) or 0) > MAX_OBJECT_BYTES:
        return _too_large(MAX_OBJECT_BYTES)
    return None


async def receive(
    request: web.Request, target: Path, limit: int = MAX_OBJECT_BYTES
) -> tuple[int, str]:
    """Write a request's payload to ``target``; its size and MD5 hex digest.

    :param request: the request.
    :param target: the new file.
    :param limit: largest payload accepted.
    :raises S3Error: ``EntityTooLarge``, ``IncompleteBody`` (``target`` is then removed).
    """
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with target.open("wb") as writer:
            async for chunk in _chunks(request):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                digest.update(chunk)
                writer.write(chunk)
        declared = declared_size(request)
        if declared is not None and declared != size:
            raise S3Error("IncompleteBody", "The decoded body is not the declared length.")
    except BaseException:
        remove_quietly(target)
        raise
    return size, digest.hexdigest()


async def _read_xml(request: web.Request) -> ET.Element:
    body = await request.content.read(MAX_XML_BYTES + 1)
    if len(body) > MAX_XML_BYTES:
        raise S3Error("MaxMessageLengthExceeded", "Your request was too big.")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as err:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed.") from err
    for element in root.iter():  # drop the namespace: clients send it or not
        element.tag = element.tag.rpartition("}")[2]
    return root


def _stored_headers(request: web.Request) -> dict[str, str]:
    headers = {name: request.headers[name] for name in _STORED_HEADERS if name in request.headers}
    for name, value in request.headers.items():
        if name.lower().startswith("x-amz-meta-"):
            headers[name.lower()] = value
    return headers


# -- buckets ----------------------------------------------------------------------------------


async def list_buckets(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``GET /``."""
    items = "".join(
        f"<Bucket>{_el('Name', name)}{_el('CreationDate', _iso(created))}</Bucket>"
        for name, created in store.buckets()
    )
    owner = f"<Owner>{_el('ID', 'spot-emulator')}{_el('DisplayName', 'spot-emulator')}</Owner>"
    return _xml("ListAllMyBucketsResult", f"{owner}<Buckets>{items}</Buckets>")


async def create_bucket(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``PUT /<bucket>``: us-east-1 answers 200 to its owner re-creating a bucket."""
    await request.read()  # CreateBucketConfiguration: one region here
    if not store.create_bucket(bucket) and request.app[REGION_KEY] != "us-east-1":
        raise S3Error(
            "BucketAlreadyOwnedByYou",
            "Your previous request to create the named bucket succeeded and you already own it.",
            409,
            BucketName=bucket,
        )
    return web.Response(headers=_headers({"Location": f"/{bucket}"}))


async def head_bucket(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``HEAD /<bucket>``."""
    store.require_bucket(bucket)
    return web.Response(headers=_headers({"x-amz-bucket-region": request.app[REGION_KEY]}))


async def delete_bucket(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``DELETE /<bucket>``."""
    store.delete_bucket(bucket)
    return web.Response(status=204, headers=_headers())


async def bucket_location(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``GET /<bucket>?location`` (empty for us-east-1, as S3 answers)."""
    store.require_bucket(bucket)
    region = request.app[REGION_KEY]
    document = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{S3_NS}">'
        f"{'' if region == 'us-east-1' else escape(region)}</LocationConstraint>"
    )
    return web.Response(
        body=document.encode(), headers=_headers({"Content-Type": "application/xml"})
    )


def _max_keys(request: web.Request) -> int:
    text = request.query.get("max-keys", "1000")
    try:
        value = int(text)
    except ValueError:
        raise S3Error(
            "InvalidArgument", "Provided max-keys not an integer or within integer range"
        ) from None
    if value < 0:
        raise S3Error("InvalidArgument", "max-keys must be a non-negative integer")
    return min(value, 1000)


def _listing_xml(page: Listing, url: bool) -> str:
    def shown(value: str) -> str:
        return quote(value, safe="/") if url else value

    contents = "".join(
        "<Contents>"
        f"{_el('Key', shown(o.key))}{_el('LastModified', _iso(o.modified))}"
        f"{_el('ETag', chr(34) + o.etag + chr(34))}{_el('Size', o.size)}"
        f"{_el('StorageClass', 'STANDARD')}</Contents>"
        for o in page.objects
    )
    prefixes = "".join(
        f"<CommonPrefixes>{_el('Prefix', shown(p))}</CommonPrefixes>" for p in page.prefixes
    )
    return contents + prefixes


async def list_objects(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``GET /<bucket>`` (ListObjects) and ``GET /<bucket>?list-type=2`` (ListObjectsV2)."""
    query = request.query
    v2 = query.get("list-type") == "2"
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    url = query.get("encoding-type") == "url"
    limit = _max_keys(request)
    if v2:
        token = query.get("continuation-token")
        after = _decode_token(token) if token else query.get("start-after", "")
    else:
        after = query.get("marker", "")
    page = store.list(bucket, prefix, delimiter, after, limit)

    def shown(value: str) -> str:
        return quote(value, safe="/") if url else value

    head = _el("Name", bucket) + _el("Prefix", shown(prefix)) + _el("MaxKeys", limit)
    if delimiter:
        head += _el("Delimiter", shown(delimiter))
    if url:
        head += _el("EncodingType", "url")
    head += _el("IsTruncated", str(page.truncated).lower())
    if v2:
        head += _el("KeyCount", len(page.objects) + len(page.prefixes))
        if token:
            head += _el("ContinuationToken", token)
        if page.truncated:
            head += _el("NextContinuationToken", _encode_token(page.last))
        if query.get("start-after"):
            head += _el("StartAfter", shown(query["start-after"]))
    else:
        head += _el("Marker", shown(after))
        if page.truncated:
            head += _el("NextMarker", shown(page.last))
    return _xml("ListBucketResult", head + _listing_xml(page, url))


def _encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def delete_objects(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``POST /<bucket>?delete`` (at most 1,000 keys)."""
    store.require_bucket(bucket)
    root = await _read_xml(request)
    keys = [el.findtext("Key") or "" for el in root.findall("Object")]
    if len(keys) > 1000:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed.")
    quiet = (root.findtext("Quiet") or "").lower() == "true"
    store.delete(bucket, keys)
    deleted = "" if quiet else "".join(f"<Deleted>{_el('Key', k)}</Deleted>" for k in keys)
    return _xml("DeleteResult", deleted)


# -- objects ----------------------------------------------------------------------------------


async def put_object(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``PUT /<bucket>/<key>``: on disk and indexed before the answer."""
    check_key(key)
    store.require_bucket(bucket)
    blob = store.new_blob()
    size, etag = await receive(request, blob)
    store.put(bucket, key, blob, size, etag, _stored_headers(request))
    return web.Response(headers=_headers({"ETag": f'"{etag}"'}))


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes a single-range ``Range`` header asks for; None: the whole object."""
    unit, _sep, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first_text, _sep, last_text = spec.strip().partition("-")
    try:
        if not first_text:
            first, last = max(size - int(last_text), 0), size - 1
        else:
            first = int(first_text)
            last = min(int(last_text), size - 1) if last_text else size - 1
    except ValueError:
        return None
    if first > last or first >= size:
        raise S3Error(
            "InvalidRange", "The requested range is not satisfiable", 416, RangeRequested=header
        )
    return first, last


async def get_object(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.StreamResponse:
    """``GET /<bucket>/<key>`` (a single byte range too), streamed from the file."""
    info = store.require(bucket, key)
    headers = _object_headers(info)
    first, last = 0, info.size - 1
    wanted = (
        _byte_range(request.headers["Range"], info.size) if "Range" in request.headers else None
    )
    status = 200
    if wanted is not None:
        first, last = wanted
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = last - first + 1
    with info.path.open("rb") as reader:  # opened before prepare: a file is never half-answered
        await response.prepare(request)
        reader.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            chunk = reader.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await response.write(chunk)
    await response.write_eof()
    return response


async def head_object(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``HEAD /<bucket>/<key>``."""
    info = store.require(bucket, key)
    headers = _object_headers(info)
    headers["Content-Length"] = str(info.size)
    return web.Response(headers=headers)


async def delete_object(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``DELETE /<bucket>/<key>`` (204 whether or not the key was there, as S3 answers)."""
    store.require_bucket(bucket)
    store.delete(bucket, [key])
    return web.Response(status=204, headers=_headers())


def _copy_source(request: web.Request) -> tuple[str, str]:
    source = unquote(request.headers["x-amz-copy-source"].partition("?")[0]).lstrip("/")
    bucket, _sep, key = source.partition("/")
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
    return bucket, key


async def copy_object(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``PUT /<bucket>/<key>`` with ``x-amz-copy-source`` (metadata copied unless REPLACE)."""
    check_key(key)
    store.require_bucket(bucket)
    source = store.require(*_copy_source(request))
    replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
    headers = _stored_headers(request) if replace else dict(source.headers)
    blob = store.new_blob()
    try:
        etag = await asyncio.to_thread(copy_blob, source.path, blob)
    except BaseException:
        remove_quietly(blob)
        raise
    info = store.put(bucket, key, blob, source.size, etag, headers)
    body = _el("LastModified", _iso(info.modified)) + _el("ETag", f'"{etag}"')
    return _xml("CopyObjectResult", body)


# -- multipart uploads ------------------------------------------------------------------------


async def create_upload(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``POST /<bucket>/<key>?uploads``."""
    check_key(key)
    upload_id = store.create_upload(bucket, key, _stored_headers(request))
    body = _el("Bucket", bucket) + _el("Key", key) + _el("UploadId", upload_id)
    return _xml("InitiateMultipartUploadResult", body)


def _part_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 10_000:
        raise S3Error(
            "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"
        )
    return number


async def upload_part(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``PUT /<bucket>/<key>?partNumber=N&uploadId=ID``."""
    if "x-amz-copy-source" in request.headers:
        raise S3Error(
            "NotImplemented", "UploadPartCopy is not implemented by the spot emulator", 501
        )
    upload_id = request.query["uploadId"]
    store.upload(upload_id, bucket, key)
    target = store.part_path(upload_id, _part_number(request.query["partNumber"]))
    temporary = target.with_name(target.name + ".part")
    _size, etag = await receive(request, temporary)
    temporary.replace(target)
    (target.with_name(target.name + ".etag")).write_text(etag, encoding="ascii")
    return web.Response(headers=_headers({"ETag": f'"{etag}"'}))


def _completed_parts(
    root: ET.Element, store: ObjectStore, upload_id: str
) -> tuple[list[Path], str]:
    """The part files a CompleteMultipartUpload names, checked; and the multipart ETag."""
    paths: list[Path] = []
    digests = b""
    previous = 0
    parts = root.findall("Part")
    if not parts:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed.")
    for index, part in enumerate(parts):
        number = _part_number(part.findtext("PartNumber") or "")
        if number <= previous:
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order.")
        previous = number
        path = store.part_path(upload_id, number)
        etag_file = path.with_name(path.name + ".etag")
        given = (part.findtext("ETag") or "").strip('"')
        if not etag_file.is_file() or etag_file.read_text(encoding="ascii") != given:
            raise S3Error(
                "InvalidPart", "One or more of the specified parts could not be found.", 400
            )
        if index < len(parts) - 1 and path.stat().st_size < MIN_PART_BYTES:
            raise S3Error(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.",
            )
        paths.append(path)
        digests += bytes.fromhex(given)
    etag = hashlib.md5(digests, usedforsecurity=False).hexdigest() + f"-{len(paths)}"
    return paths, etag


async def complete_upload(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``POST /<bucket>/<key>?uploadId=ID``: parts concatenated into the object."""
    upload_id = request.query["uploadId"]
    headers = store.upload(upload_id, bucket, key)
    paths, etag = _completed_parts(await _read_xml(request), store, upload_id)
    blob = store.new_blob()
    try:
        size = await asyncio.to_thread(concat_blobs, paths, blob)
    except BaseException:
        remove_quietly(blob)
        raise
    store.put(bucket, key, blob, size, etag, headers)
    store.end_upload(upload_id)
    body = _el("Location", f"/{bucket}/{key}") + _el("Bucket", bucket) + _el("Key", key)
    return _xml("CompleteMultipartUploadResult", body + _el("ETag", f'"{etag}"'))


async def abort_upload(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.Response:
    """``DELETE /<bucket>/<key>?uploadId=ID``."""
    upload_id = request.query["uploadId"]
    store.upload(upload_id, bucket, key)
    store.end_upload(upload_id)
    return web.Response(status=204, headers=_headers())


# -- dispatch ---------------------------------------------------------------------------------


def _operation(method: str, query: Any, has_key: bool, copy: bool) -> Operation | None:
    if not has_key:
        bucket_ops: dict[tuple[str, str], Operation] = {
            ("PUT", ""): create_bucket,
            ("HEAD", ""): head_bucket,
            ("DELETE", ""): delete_bucket,
            ("GET", "location"): bucket_location,
            ("GET", ""): list_objects,
            ("POST", "delete"): delete_objects,
        }
        flag = "location" if "location" in query else "delete" if "delete" in query else ""
        return bucket_ops.get((method, flag))
    if "uploads" in query:
        return create_upload if method == "POST" else None
    if "uploadId" in query:
        upload_ops = {"PUT": upload_part, "POST": complete_upload, "DELETE": abort_upload}
        return upload_ops.get(method) if method != "PUT" or "partNumber" in query else None
    object_ops = {
        "PUT": copy_object if copy else put_object,
        "GET": get_object,
        "HEAD": head_object,
        "DELETE": delete_object,
    }
    return object_ops.get(method)


def _split_path(raw_path: str) -> tuple[str, str]:
    path = unquote(raw_path.partition("?")[0])
    bucket, _sep, key = path.lstrip("/").partition("/")
    return bucket, key


async def handle(request: web.Request) -> web.StreamResponse:
    """Serve one S3 request.

    :param request: the request.
    """
    store = request.app[STORE_KEY]
    bucket, key = _split_path(request.raw_path)
    started = time.monotonic()
    try:
        return await _serve(request, store, bucket, key)
    finally:
        log.debug(
            "S3 %s %s %.1f ms",
            request.method,
            request.raw_path,
            (time.monotonic() - started) * 1000,
        )


async def _serve(
    request: web.Request, store: ObjectStore, bucket: str, key: str
) -> web.StreamResponse:
    """The answer to a request; an error's answer once the request's body is out of the way."""
    try:
        too_large = _declared_too_large(request)
        if too_large is not None:
            raise too_large
        if not bucket:
            if request.method != "GET":
                raise S3Error(
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    405,
                )
            return await list_buckets(request, store, "", "")
        unsupported = _SUBRESOURCES.intersection(request.query)
        if unsupported:
            raise S3Error(
                "NotImplemented",
                f"?{sorted(unsupported)[0]} is not implemented by the spot emulator",
                501,
            )
        operation = _operation(
            request.method, request.query, bool(key), "x-amz-copy-source" in request.headers
        )
        if operation is None:
            raise S3Error(
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                405,
            )
        return await operation(request, store, bucket, key)
    except S3Error as err:
        failure = err
    except (ConnectionError, asyncio.IncompleteReadError):
        failure = S3Error("IncompleteBody", "The request body ended early.")
    except Exception:
        log.exception("S3 %s %s failed", request.method, request.raw_path)
        failure = S3Error(
            "InternalError", "We encountered an internal error. Please try again.", 500
        )
    response = error_response(request, failure)
    if not await discard_body(request):
        return await answer_and_close(request, response)
    return response


async def answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response``, then close the connection (its buffered answer is flushed first).

    Closing at once, rather than lingering to read a body that may be 5 GiB or never come.

    :param request: the request.
    :param response: the answer.
    """
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


async def discard_body(request: web.Request, limit: int = MAX_DISCARD_BYTES) -> bool:
    """Read and drop what is left of a request's body; False when it is too large to.

    A refused body that the client still sends must be consumed before the connection serves the
    next request; one past ``limit`` (an oversized upload) is not worth reading: the caller closes
    the connection instead.

    :param request: the request.
    :param limit: the most bytes to read.
    """
    if request.content.at_eof():
        return True
    if request.content_length is None or request.content_length > limit:
        return False  # chunked transfer (no size known ahead) or too large
    try:
        while not request.content.at_eof():
            if not await request.content.read(_CHUNK):
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        return False
    return request.content.at_eof()


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue``: ``100 Continue``, or a final refusal that closes.

    A request the guard refuses, or a body over the size limit, is refused before the client
    sends the body; as the client then sends none, the connection is closed (a lingering server
    would read the next request as it). aiohttp calls this before the middlewares: the guard's
    check is made here too, or a refused request would first be told to go on.

    :param request: the request.
    """
    reason = refusal_reason(request, request.app[HOSTS_KEY])
    if reason is not None:
        return await answer_and_close(request, refuse(request, reason))
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers['Expect']}")
    too_large = _declared_too_large(request)
    if too_large is not None:
        return await answer_and_close(request, error_response(request, too_large))
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


def build_s3_app(store: ObjectStore, region: str, hosts: frozenset[str]) -> web.Application:
    """The aiohttp application of the emulator's S3.

    :param store: the object store.
    :param region: the region buckets are in.
    :param hosts: the ``Host`` names to answer (:func:`~.guard.allowed_hosts`).
    """
    app = web.Application(middlewares=[guard_middleware(hosts, refuse)])
    app[STORE_KEY] = store
    app[REGION_KEY] = region
    app[HOSTS_KEY] = hosts
    app.router.add_route("*", "/{path:.*}", handle, expect_handler=expect_continue)
    return app
