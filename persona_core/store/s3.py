"""Blob store on S3 (or any S3-compatible server: SeaweedFS, MinIO, Ceph).

Layout in the bucket (under an optional key prefix):
``blobs/sha256/<2 hex>/<64 hex>`` for content-addressed blobs, ``objects/<key>`` for named
objects (uploads, manifests). Every write sends ``ChecksumSHA256`` so the server refuses
bytes that arrive altered; every read re-hashes, so an object rewritten in the bucket is
reported as an :class:`IntegrityError` instead of being served.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from persona_core.errors import (
    BlobNotFoundError,
    IntegrityError,
    InvalidInputError,
    StoreUnavailableError,
)
from persona_core.refs import parse_ref, sha256_hex
from persona_core.signing import MAX_TTL_S
from persona_core.store.base import BlobStore, StoredItem, safe_segment

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
# Credentials or permissions the server refuses: the store is unusable, not the request wrong.
_ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
_REFUSED = {"403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden"}


class S3BlobStore(BlobStore):
    """Content-addressed blobs and named objects in one S3 bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        path_style: bool = True,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
        list_page_size: int = 1000,
    ) -> None:
        if not bucket or "/" in bucket:
            raise InvalidInputError(f"bad bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = "/".join(safe_segment(s) for s in prefix.strip("/").split("/")) + "/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.list_page_size = list_page_size
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "virtual"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Checksums only when we ask for them: we always send SHA256 ourselves, and
            # the default CRC trailers are not understood by every S3-compatible server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        self._s3: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config, **credentials
        )
        # A signed URL names the host it was signed for (SigV4 signs the Host header), so URLs
        # for clients outside the deployment's network are signed against the endpoint they
        # reach; presigning is local computation, this client never sends a request.
        self.public_endpoint_url = public_endpoint_url or endpoint_url
        self._presigner: Any = self._s3
        if public_endpoint_url:
            self._presigner = session.client(
                "s3", endpoint_url=public_endpoint_url, region_name=region, config=config, **credentials
            )

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client (for tools and tests that look at the bucket itself)."""
        return self._s3

    # -- keys -------------------------------------------------------------------------
    def blob_key(self, ref: str) -> str:
        digest = parse_ref(ref).digest
        return f"{self.prefix}blobs/sha256/{digest[:2]}/{digest}"

    def object_key(self, key: str) -> str:
        return self.prefix + "objects/" + "/".join(safe_segment(s) for s in key.split("/"))

    # -- blobs ------------------------------------------------------------------------
    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        ref = f"sha256:{digest}"
        key = self.blob_key(ref)
        # An intact copy already there (its stored checksum matches) makes this a no-op;
        # a missing or rewritten one is (re)uploaded, which also heals a tampered blob.
        if self._stored_checksum(key) != _b64_sha256(digest):
            self._put(key, data, digest)
        return ref

    def get(self, ref: str) -> bytes:
        parsed = parse_ref(ref)
        data = self._get(self.blob_key(ref), what=f"blob {parsed.blob}")
        if sha256_hex(data) != parsed.digest:
            raise IntegrityError(f"blob {parsed.blob} is corrupt: its bytes no longer match its hash")
        return data

    def exists(self, ref: str) -> bool:
        return self._stored_checksum(self.blob_key(ref)) is not None

    # -- named objects ----------------------------------------------------------------
    def put_object(self, key: str, data: bytes) -> None:
        self._put(self.object_key(key), data, sha256_hex(data))

    def get_object(self, key: str) -> bytes:
        return self._get(self.object_key(key), what=f"object {key!r}")

    def list_objects(self, prefix: str, start_after: str | None = None) -> list[str]:
        if ".." in prefix or prefix.startswith("/"):
            raise InvalidInputError(f"bad prefix {prefix!r}")
        base = self.prefix + "objects/"
        keys: list[str] = []
        # S3 orders keys by UTF-8 bytes, the same order as str comparison: the server skips
        # everything up to the cursor instead of sending it to be dropped here.
        extra = {"StartAfter": base + start_after} if start_after is not None else {}
        with self._errors(f"listing {prefix!r}"):
            paginator = self._s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self.list_page_size},
                **extra,
            )
            for page in pages:
                keys.extend(obj["Key"][len(base) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def signed_url(self, ref: str, ttl_s: int) -> str:
        if not 0 < ttl_s <= MAX_TTL_S:
            raise InvalidInputError(f"ttl_s must be in 1..{MAX_TTL_S}")
        with self._errors("presigning"):
            return str(
                self._presigner.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": self.blob_key(ref)}, ExpiresIn=ttl_s
                )
            )

    def delete(self, ref: str) -> bool:
        return self._delete(self.blob_key(ref))

    def delete_object(self, key: str) -> bool:
        return self._delete(self.object_key(key))

    def delete_many(self, refs: Sequence[str]) -> int:
        return self._delete_keys([self.blob_key(ref) for ref in refs])

    def delete_objects(self, keys: Sequence[str]) -> int:
        return self._delete_keys([self.object_key(key) for key in keys])

    def _delete_keys(self, keys: list[str]) -> int:
        """DeleteObjects, 1,000 keys a call (S3's limit); a key that was not there counts too."""
        deleted = 0
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            with self._errors(f"deleting {len(chunk)} objects"):
                resp = self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": False}
                )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StoreUnavailableError(f"S3 could not delete {first.get('Key')}: {first.get('Code')}")
            deleted += len(resp.get("Deleted", []))
        return deleted

    def iter_blobs(self) -> Iterator[StoredItem]:
        base = self.prefix + "blobs/sha256/"
        for key, modified, size in self._list(base):
            digest = key.rpartition("/")[2]
            yield StoredItem(f"sha256:{digest}", modified, size)

    def iter_objects(self, prefix: str = "") -> Iterator[StoredItem]:
        if ".." in prefix or prefix.startswith("/"):
            raise InvalidInputError(f"bad prefix {prefix!r}")
        base = self.prefix + "objects/"
        for key, modified, size in self._list(base + prefix):
            yield StoredItem(key[len(base):], modified, size)

    def _list(self, prefix: str) -> Iterator[tuple[str, datetime, int]]:
        with self._errors(f"listing {prefix!r}"):
            paginator = self._s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                       PaginationConfig={"PageSize": self.list_page_size})
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["LastModified"], int(obj.get("Size", 0))

    def _delete(self, key: str) -> bool:
        if self._stored_checksum(key) is None:
            return False
        with self._errors(f"deleting {key!r}"):
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    # -- bucket -----------------------------------------------------------------------
    def ping(self) -> None:
        try:
            with self._errors(f"bucket {self.bucket!r}"):
                self._s3.head_bucket(Bucket=self.bucket)
        except BlobNotFoundError:
            raise StoreUnavailableError(f"S3 bucket {self.bucket!r} does not exist") from None

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (never implicit: deployments own buckets)."""
        try:
            self.ping()
            return
        except StoreUnavailableError:
            pass
        region = self._s3.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._s3.create_bucket(**kwargs)
        except ClientError as exc:
            # Another client creating it at the same moment is success too; anything else
            # (refused credentials included) goes through the usual translation.
            if exc.response.get("Error", {}).get("Code") not in _ALREADY_THERE:
                with self._errors(f"creating bucket {self.bucket!r}"):
                    raise
        except BotoCoreError:
            with self._errors(f"creating bucket {self.bucket!r}"):
                raise
        self.ping()

    # -- internals --------------------------------------------------------------------
    def _put(self, key: str, data: bytes, digest: str) -> None:
        checksum = _b64_sha256(digest)
        with self._errors(f"writing {key!r}"):
            resp = self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=checksum)
        echoed = resp.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:
            raise IntegrityError(f"{key!r}: the server stored bytes with another sha256")

    def _get(self, key: str, what: str) -> bytes:
        with self._errors(what):
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def _stored_checksum(self, key: str) -> str | None:
        """The object's stored SHA256 checksum ('' when it has none), None when absent."""
        try:
            with self._errors(key):
                head = self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except BlobNotFoundError:
            return None
        return str(head.get("ChecksumSHA256") or "")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in _NO_BUCKET:
                raise StoreUnavailableError(f"S3 bucket {self.bucket!r} does not exist") from None
            if code in _NOT_FOUND:
                raise BlobNotFoundError(f"{what} not found") from None
            if code in _REFUSED:
                raise StoreUnavailableError(
                    f"S3 refused access to bucket {self.bucket!r} ({code}): check the credentials"
                ) from None
            if code in {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"}:
                raise IntegrityError(f"{what}: the server received altered bytes ({code})") from None
            raise StoreUnavailableError(f"S3 error on {what}: {code} {err.get('Message', '')}") from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"S3 at {self.endpoint_url or 'AWS'} unreachable: {exc}") from None


def _b64_sha256(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
