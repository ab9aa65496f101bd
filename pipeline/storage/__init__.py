"""Where bytes live: S3 objects, raw and ops keys, the curated store, leases, media decoding, the model store."""
