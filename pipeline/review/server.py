"""Run the review app with uvicorn (`callaffect serve`)."""

from __future__ import annotations

import os

from pipeline.review.app import create_app
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore


def serve(settings: Settings, *, marts_path: str | os.PathLike, curated_root: str | None, host: str, port: int,
          secure_cookies: bool) -> None:
    import uvicorn

    store = ReviewStore(settings, root=curated_root)
    app = create_app(settings, marts_path, store, CuratedStore(settings, curated_root), secure_cookies=secure_cookies)
    # One worker: the review index lives in the process (pipeline.review.review_state).
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)
