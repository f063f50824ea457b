"""Objects in an S3-compatible bucket (AWS, MinIO) through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from platform_core.storage.base import CHUNK, check_key

if TYPE_CHECKING:
    from platform_core.config import Settings

# upload_fileobj switches to multipart above this size; an aborted multipart upload leaves no object.
MULTIPART_THRESHOLD = 16 * 1024 * 1024


class S3Store:
    def __init__(
        self,
        url: str,
        client: Any,
        sse: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        parsed = urlparse(url)
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client
        self.extra: dict[str, str] = {}
        if sse:
            self.extra["ServerSideEncryption"] = sse
            if kms_key_id:
                self.extra["SSEKMSKeyId"] = kms_key_id
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )

    @classmethod
    def from_settings(cls, url: str, settings: Settings | None) -> S3Store:
        kwargs: dict[str, Any] = {"config": Config(retries={"max_attempts": 5, "mode": "standard"})}
        sse = kms = None
        if settings is not None:
            kwargs.update(
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
            )
            sse, kms = settings.s3_server_side_encryption, settings.s3_kms_key_id
        return cls(url, boto3.client("s3", **kwargs), sse, kms)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream") -> int:
        counter = _CountingReader(stream)
        self.client.upload_fileobj(
            counter,
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type, **self.extra},
            Config=self.transfer,
        )
        return counter.count

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> int:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type, **self.extra
        )
        return len(data)

    def open(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise
        return iter(body.iter_chunks(CHUNK))

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.open(key))

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        # A prefix is not a key: it may end with "/" or stop mid-name, but never climbs out.
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"invalid prefix {prefix!r}")
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
        )
        return url

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


class _CountingReader(io.RawIOBase):
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # boto3 takes a short read for the end of the stream; network streams return short reads, so
        # fill the request unless the stream really ended.
        if size is None or size < 0:
            data = self.inner.read()
        else:
            parts, want = [], size
            while want > 0:
                part = self.inner.read(want)
                if not part:
                    break
                parts.append(part)
                want -= len(part)
            data = b"".join(parts)
        self.count += len(data)
        return data
