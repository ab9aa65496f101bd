"""Model store: model paths may be local or s3:// (a key or a prefix in the model bucket).

An s3:// model is copied once per worker into ``model_store.cache_dir`` (keyed by its URI and
the objects' ETags, so a replaced model is fetched again) and the local path is returned.
Nothing here talks to a model hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pipeline.settings import Settings


def resolve_model_path(path_or_uri: str, settings: Settings) -> Path:
    """Local path of a model given as a local path or an s3:// key or prefix."""
    if not path_or_uri.startswith("s3://"):
        path = Path(path_or_uri).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        return path

    from pipeline.storage import object_store

    client = object_store.s3_client(settings.s3)
    bucket, key = object_store.parse_s3_uri(path_or_uri)
    prefix = key.rstrip("/")
    objects = [o for o in object_store.list_objects(client, bucket, prefix) if o.key == prefix or o.key.startswith(prefix + "/")]
    if not objects:
        raise FileNotFoundError(f"model not found in the store: {path_or_uri}")
    fingerprint = hashlib.sha256(
        (f"{bucket}/{prefix}" + "".join(sorted(o.key + o.etag for o in objects))).encode()
    ).hexdigest()[:16]
    root = Path(settings.model_store.cache_dir).expanduser() / fingerprint
    single = len(objects) == 1 and objects[0].key == prefix
    target = root / Path(prefix).name if single else root
    if (root / ".complete").exists():
        return target
    staging = root.with_name(f"{root.name}.part-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for obj in objects:
        rel = Path(prefix).name if single else obj.key[len(prefix) + 1 :]
        object_store.download_to(client, bucket, obj.key, staging / rel)
    (staging / ".complete").touch()
    try:
        os.replace(staging, root)  # atomic: a concurrent worker either sees all of it or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another worker won the race
    return target
