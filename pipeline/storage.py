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
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if s3.endpoint_url else None,
    )
    return session.client("s3", endpoint_url=s3.endpoint_url, config=config)


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


def download_to(client, bucket: str, key: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key, str(path))
    return path


def upload_file(client, path: str | os.PathLike, bucket: str, key: str) -> None:
    client.upload_file(str(path), bucket, key)


def delete_object(client, bucket: str, key: str) -> None:
    client.delete_object(Bucket=bucket, Key=key)


def object_exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _NOT_FOUND:
            return False
        raise
    return True
