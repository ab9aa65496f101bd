"""Who is signed in, and what their role lets them do.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous): HttpOnly, SameSite
strict, Secure unless the app runs on plain-HTTP localhost. The account is read again on every
request (cached for a few seconds), so a disabled account loses access at once. Passwords are
argon2 hashes (pipeline.storage.reviews). Login attempts are rate-limited per client address.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

ROLE_RANK = {"reviewer": 1, "lead": 2, "admin": 3}  # each role may do what the ones below it do
_ACCOUNT_CACHE_S = 5.0


@dataclass(frozen=True)
class User:
    username: str
    role: str

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class NotSignedIn(Exception):
    """Raised by the user dependency; the app answers with a redirect to the login page."""


class AccountCache:
    def __init__(self, store):
        self._store = store
        self._seen: dict[str, tuple[float, object]] = {}

    def get(self, username: str):
        now = time.monotonic()
        hit = self._seen.get(username)
        if hit and now - hit[0] < _ACCOUNT_CACHE_S:
            return hit[1]
        account = self._store.get_account(username)
        self._seen[username] = (now, account)
        return account

    def forget(self, username: str) -> None:
        self._seen.pop(username, None)


def current_user(request: Request) -> User:
    username = request.session.get("user")
    if not username:
        raise NotSignedIn()
    account = request.app.state.accounts.get(username)
    if account is None or account.disabled:
        request.session.clear()
        raise NotSignedIn()
    return User(account.username, account.role)


def require(role: str):
    """A dependency: the signed-in user, if their role reaches ``role`` (else 403)."""

    def dependency(request: Request) -> User:
        user = current_user(request)
        if not user.can(role):
            raise HTTPException(status_code=403, detail=f"this page needs the {role} role")
        return user

    return dependency


def sign_in(request: Request, username: str) -> None:
    request.session.clear()  # a new session on sign-in: no fixation
    request.session["user"] = username
