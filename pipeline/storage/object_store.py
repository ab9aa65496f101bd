"""S3 access: the same boto3 code for AWS (no endpoint) and a compatible endpoint (moto locally).

Credentials come from boto3's standard chain (environment, profile, instance role). A local
endpoint ignores them, so dummy ones are used when the chain finds none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.settings import S3Settings

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# A conditional write lost: the object exists (If-None-Match) or changed (If-Match). S3 answers
# 412, or 409 when another conditional write to the key is in flight.
_CONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without quotes
    last_modified: datetime


def _session(s3: S3Settings) -> boto3.Session:
    """AWS: boto3's default credential chain. A local endpoint: the AWS_* environment variables
    or dummy keys, never the full chain, whose last resort asks the EC2 metadata address (a
    network call off this machine) when no credentials are configured."""
    if not s3.endpoint_url:
        return boto3.Session(region_name=s3.region)
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    return boto3.Session(
        aws_access_key_id=key or "testing",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing") if key else "testing",
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") if key else None,
        region_name=s3.region,
    )


def credentials(s3: S3Settings) -> tuple[str, str, str | None] | None:
    """(access key, secret, session token) the clients use, for tools that need them (DuckDB)."""
    creds = _session(s3).get_credentials()
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def s3_client(s3: S3Settings):
    session = _session(s3)
    # Path-style addressing: bucket names do not resolve as hostnames on a local endpoint.
    # Ten attempts with standard (jittered exponential) backoff: a 20 % rate of 503 SlowDown
    # leaves about one request in 10^7 failing, instead of one in 3,000 with boto3's default.
    # AWS_MAX_ATTEMPTS, boto3's own variable, still overrides it.
    config = Config(
        retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "10")), "mode": "standard"},
        s3={"addressing_style": "path"} if s3.endpoint_url else None,
    )
    return session.client("s3", endpoint_url=s3.endpoint_url, config=config)


def aws_client(s3: S3Settings, service: str):
    """A client of another AWS service (SQS) with the same credentials and endpoint as S3's."""
    return _session(s3).client(service, endpoint_url=s3.endpoint_url)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def ensure_bucket(client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in _NOT_FOUND:
            raise
        region = client.meta.region_name
        # us-east-1 is the one region that refuses an explicit LocationConstraint.
        extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=bucket, **extra)


def list_objects(client, bucket: str, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
        for obj in page.get("Contents", []):
            yield ObjectInfo(obj["Key"], obj["Size"], obj["ETag"].strip('"'), obj["LastModified"])


def put_bytes(client, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def get_bytes(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def get_bytes_and_etag(client, bucket: str, key: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag (without quotes), or None when it does not exist."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _NOT_FOUND:
            return None
        raise
    return response["Body"].read(), response["ETag"].strip('"')


def put_conditional(client, bucket: str, key: str, data: bytes, *, if_etag: str | None = None) -> str | None:
    """Create ``key`` only if it does not exist (``if_etag`` None), or replace it only if its ETag
    is still ``if_etag``. Returns the new ETag, or None when the condition failed (someone else
    wrote first): S3's conditional writes make this a compare-and-swap."""
    condition = {"IfMatch": if_etag} if if_etag else {"IfNoneMatch": "*"}
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", **condition)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _CONDITION_FAILED or exc.response["Error"]["Code"] in _NOT_FOUND:
            return None
        raise
    return response["ETag"].strip('"')


def delete_if_match(client, bucket: str, key: str, etag: str) -> bool:
    """Delete ``key`` only if its ETag is still ``etag``; False when it changed or is gone."""
    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _CONDITION_FAILED or exc.response["Error"]["Code"] in _NOT_FOUND:
            return False
        raise
    return True


def object_size(client, bucket: str, key: str) -> int | None:
    """The object's size in bytes, or None when it does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _NOT_FOUND:
            return None
        raise


def download_to(client, bucket: str, key: str, path: str | os.PathLike) -> Path:
    """Download to ``path``, readable by this user only (raw media is personal data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    client.download_file(bucket, key, str(path))
    path.chmod(0o600)
    return path


def upload_file(client, path: str | os.PathLike, bucket: str, key: str) -> None:
    client.upload_file(str(path), bucket, key)


def delete_object(client, bucket: str, key: str) -> None:
    client.delete_object(Bucket=bucket, Key=key)


# --- every version of an object: erasure (a versioned bucket keeps what a plain delete "removes") ---


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str  # "null" on a bucket that was never versioned
    is_delete_marker: bool
    is_latest: bool
    size: int
    last_modified: datetime


def list_versions(client, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
    """Every version and delete marker under ``prefix`` (an unversioned bucket answers one "null"
    version per object), in key order."""
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        found = [
            *(ObjectVersion(v["Key"], v["VersionId"], False, v["IsLatest"], v["Size"], v["LastModified"])
              for v in page.get("Versions", [])),
            *(ObjectVersion(m["Key"], m["VersionId"], True, m["IsLatest"], 0, m["LastModified"])
              for m in page.get("DeleteMarkers", [])),
        ]
        yield from sorted(found, key=lambda v: (v.key, not v.is_latest, v.last_modified))


def get_version_bytes(client, bucket: str, key: str, version_id: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()


def delete_versions(client, bucket: str, versions: list[ObjectVersion]) -> int:
    """Delete these versions (and delete markers) for good; returns how many. Raises when S3
    refuses one: an erasure must not pass for done."""
    done = 0
    for start in range(0, len(versions), 1000):  # DeleteObjects takes at most 1000 keys
        chunk = versions[start:start + 1000]
        response = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": v.key, "VersionId": v.version_id} for v in chunk], "Quiet": True}
        )
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(f"S3 refused to delete {len(response['Errors'])} version(s): {first.get('Code')}")
        done += len(chunk)
    return done


def purge_key(client, bucket: str, key: str) -> int:
    """Delete every version and delete marker of exactly ``key``; returns how many."""
    return delete_versions(client, bucket, [v for v in list_versions(client, bucket, key) if v.key == key])
