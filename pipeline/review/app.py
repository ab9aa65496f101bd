"""`callaffect serve`: the QA review app (FastAPI, server-rendered, no external assets).

It reads the DuckDB marts read-only (pipeline.review.marts_reader) and the review record
(verdicts, notes, assignments, accounts, call views) through pipeline.storage.reviews, under the
same curated root the batch writes (an s3:// bucket, or a local directory for the demo).
Every route needs a signed-in user (pipeline.review.auth); every form is CSRF-protected
(starlette-csrf: a signed cookie echoed in a header by static/app.js); bad input is a 4xx page.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.middleware.sessions import SessionMiddleware
from starlette_csrf import CSRFMiddleware

from pipeline.review import pages, reports
from pipeline.review.auth import AccountCache, NotSignedIn, sign_in
from pipeline.review.marts_reader import MartsReader
from pipeline.review.review_state import ReviewState
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))


def secret_key(path: str) -> str:
    """The signing key, from its file; a new random key (0600) when there is none yet."""
    file = Path(path).expanduser()
    if file.is_file():
        return file.read_text().strip()
    file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def create_app(settings: Settings, marts_path: str | os.PathLike, store, curated: CuratedStore, *,
               secure_cookies: bool | None = None) -> FastAPI:
    """The app over one marts file, one review store (pipeline.storage.reviews.ReviewStore) and the
    curated store its snippets are read from (the same root)."""
    review = settings.review
    secure = review.secure_cookies if secure_cookies is None else secure_cookies
    key = secret_key(review.secret_key_path)
    marts = MartsReader(marts_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        marts.close()  # DuckDB would hand the next opener of the path this instance, stale or not

    app = FastAPI(title="callaffect review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.marts = marts
    app.state.store = store
    app.state.curated = curated
    app.state.accounts = AccountCache(store)
    app.state.review_state = ReviewState(store, redaction=settings.redaction)
    app.state.templates = TEMPLATES
    app.state.limiter = Limiter(key_func=get_remote_address)
    # Order: the session is read first (outermost), then CSRF is checked on every unsafe method.
    app.add_middleware(CSRFMiddleware, secret=key, cookie_secure=secure, cookie_samesite="strict")
    app.add_middleware(SessionMiddleware, secret_key=key, session_cookie="callaffect_session",
                       max_age=review.session_max_age_s, same_site="strict", https_only=secure)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _login_routes(app, review.login_attempts_per_minute)
    app.include_router(pages.router)
    app.include_router(reports.router)
    _error_pages(app)
    return app


def _login_routes(app: FastAPI, attempts_per_minute: int) -> None:
    limiter = app.state.limiter

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str | None = None):
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": error and "Wrong user name or password."})

    @app.post("/login")
    @limiter.limit(f"{attempts_per_minute}/minute")
    async def login(request: Request):
        form = await request.form()
        username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
        account = request.app.state.store.verify_password(username, password) if _safe_name(username) else None
        if account is None or account.disabled:
            return RedirectResponse("/login?error=1", status_code=303)
        sign_in(request, account.username)
        return RedirectResponse("/queue", status_code=303)

    @app.post("/logout")
    def logout(request: Request):
        request.session.clear()
        return RedirectResponse("/login", status_code=303)


def _safe_name(username: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", username))


def _error_pages(app: FastAPI) -> None:
    def page(request: Request, status: int, message: str) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                          status_code=status)

    @app.exception_handler(NotSignedIn)
    def not_signed_in(request: Request, exc: NotSignedIn):
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException):
        return page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"][1:]) or "request" for e in exc.errors()})
        return page(request, 400, f"not a valid value: {', '.join(fields)}")

    @app.exception_handler(RateLimitExceeded)
    def too_many(request: Request, exc: RateLimitExceeded):
        return page(request, 429, "too many sign-in attempts: wait a minute")

    @app.exception_handler(FileNotFoundError)
    def no_marts(request: Request, exc: FileNotFoundError):
        return page(request, 503, "the marts are not built yet")
