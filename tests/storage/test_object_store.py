"""pipeline.storage.object_store and pipeline.devtools.s3server against moto's real server on 127.0.0.1."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from pipeline.storage import object_store
from pipeline.devtools.s3server import LocalS3, LocalS3Process
from pipeline.settings import S3Settings


def test_round_trip(settings, tmp_path):
    s3 = settings.s3
    client = object_store.s3_client(s3)
    bucket = s3.raw_bucket
    object_store.ensure_bucket(client, bucket)  # already there: a no-op, not an error

    object_store.put_bytes(client, bucket, "a/b.bin", b"\x00payload\xff")
    assert object_store.get_bytes(client, bucket, "a/b.bin") == b"\x00payload\xff"
    assert object_store.object_size(client, bucket, "a/b.bin") is not None
    assert object_store.object_size(client, bucket, "a/missing.bin") is None

    src = tmp_path / "src.wav"
    src.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    object_store.upload_file(client, src, bucket, "2024-01-01/c1.wav")
    out = object_store.download_to(client, bucket, "2024-01-01/c1.wav", tmp_path / "deep" / "dir" / "c1.wav")
    assert out.read_bytes() == src.read_bytes()

    [info] = [o for o in object_store.list_objects(client, bucket, "2024-01-01/")]
    assert (info.key, info.size) == ("2024-01-01/c1.wav", src.stat().st_size)
    assert info.etag and '"' not in info.etag

    object_store.delete_object(client, bucket, "a/b.bin")
    assert object_store.object_size(client, bucket, "a/b.bin") is None


def test_parse_s3_uri():
    assert object_store.parse_s3_uri("s3://bucket/dir/file.wav") == ("bucket", "dir/file.wav")
    assert object_store.parse_s3_uri("s3://bucket") == ("bucket", "")
    for bad in ("/local/file.wav", "http://host/x", "s3:///nobucket"):
        with pytest.raises(ValueError):
            object_store.parse_s3_uri(bad)


def test_listing_is_paginated(settings):
    client = object_store.s3_client(settings.s3)
    bucket = settings.s3.curated_bucket
    keys = [f"p/{i:02d}.txt" for i in range(7)]
    for key in keys:
        object_store.put_bytes(client, bucket, key, key.encode())
    object_store.put_bytes(client, bucket, "other/x.txt", b"x")
    pages = []
    client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: pages.append(1))

    listed = [o.key for o in object_store.list_objects(client, bucket, "p/", page_size=2)]

    assert listed == keys  # every key under the prefix, in order, nothing outside it
    assert len(pages) == 4  # 2 + 2 + 2 + 1


def test_aws_mode_has_no_endpoint():
    client = object_store.s3_client(S3Settings(region="eu-west-1"))
    assert client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert client.meta.config.s3 is None  # virtual-hosted addressing, as AWS prefers


def test_local_endpoint_gets_dummy_credentials_only_when_none(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    local = S3Settings(endpoint_url="http://127.0.0.1:1")

    client = object_store.s3_client(local)
    assert client.meta.endpoint_url == "http://127.0.0.1:1"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client._request_signer._credentials.access_key == "testing"

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALONE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert object_store.s3_client(local)._request_signer._credentials.access_key == "AKIAREALONE"


def test_server_as_its_own_process():
    with LocalS3Process() as server:
        client = object_store.s3_client(S3Settings(endpoint_url=server.endpoint_url))
        object_store.ensure_bucket(client, "proc-bucket")
        object_store.put_bytes(client, "proc-bucket", "k", b"v")
        assert object_store.get_bytes(client, "proc-bucket", "k") == b"v"
        # A second server on the same port fails loudly instead of hanging.
        with pytest.raises(RuntimeError, match="did not start"):
            LocalS3Process(port=server.port).start()
        with pytest.raises(OSError, match="in use"):
            LocalS3(port=server.port).start()
    with pytest.raises(EndpointConnectionError):
        client.list_buckets()


def test_local_endpoint_never_walks_the_credential_chain(monkeypatch):
    # The chain's last resort is the EC2 metadata address, off this machine: it must not be asked.
    import botocore.credentials

    def refuse(*args, **kwargs):
        raise AssertionError("credential chain walked for a local endpoint")

    monkeypatch.setattr(botocore.credentials, "create_credential_resolver", refuse)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    local = S3Settings(endpoint_url="http://127.0.0.1:9")
    assert object_store.credentials(local) == ("testing", "testing", None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert object_store.credentials(local) == ("k", "s", None)
    object_store.s3_client(local)
