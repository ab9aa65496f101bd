import dataclasses

import pytest

from pipeline.storage import object_store
from pipeline.storage.model_store import resolve_model_path
from pipeline.settings import ModelStoreSettings


def test_local_paths_pass_through_and_missing_ones_fail(tmp_path, settings):
    (tmp_path / "m").mkdir()
    assert resolve_model_path(str(tmp_path / "m"), settings) == tmp_path / "m"
    with pytest.raises(FileNotFoundError):
        resolve_model_path(str(tmp_path / "nope"), settings)


def test_s3_prefix_and_key_are_cached_once_and_refetched_when_replaced(tmp_path, settings):
    settings = dataclasses.replace(settings, model_store=ModelStoreSettings(cache_dir=str(tmp_path / "cache")))
    client = object_store.s3_client(settings.s3)
    bucket = settings.s3.curated_bucket
    object_store.put_bytes(client, bucket, "models/pipe/config.yaml", b"a: 1\n")
    object_store.put_bytes(client, bucket, "models/pipe/ckpt/seg.bin", b"\x00" * 10)
    object_store.put_bytes(client, bucket, "models/tiny.pt", b"weights-v1")

    local = resolve_model_path(f"s3://{bucket}/models/pipe/", settings)
    assert (local / "config.yaml").read_text() == "a: 1\n" and (local / "ckpt" / "seg.bin").stat().st_size == 10
    assert resolve_model_path(f"s3://{bucket}/models/pipe", settings) == local  # cached, same place

    single = resolve_model_path(f"s3://{bucket}/models/tiny.pt", settings)
    assert single.name == "tiny.pt" and single.read_bytes() == b"weights-v1"
    object_store.put_bytes(client, bucket, "models/tiny.pt", b"weights-v2")
    assert resolve_model_path(f"s3://{bucket}/models/tiny.pt", settings).read_bytes() == b"weights-v2"
    with pytest.raises(FileNotFoundError):
        resolve_model_path(f"s3://{bucket}/models/absent", settings)
