"""No credentials in any log line, at any level.

botocore's DEBUG log prints request headers and parameters (the session token, the access key id
in ``Authorization``); a ``-v`` run must not leak them. ``install()`` puts a filter on every
handler of the root logger that masks the credentials in this process's environment and anything shaped like an AWS key, token or signature, and caps botocore's own
loggers at INFO, where they print no request dumps.
"""

from __future__ import annotations

import logging
import os
import re

MASK = "***"
_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"),  # access key ids
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s}]+"),
    re.compile(r"(?i)(aws_session_token['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s}]+"),
    re.compile(r"(?i)(aws_secret_access_key['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s}]+"),
    re.compile(r"(?i)(Credential=)[^/,\s]+"),
    re.compile(r"(?i)(Signature=)[0-9a-f]+"),
    re.compile(r"(?i)(X-Amz-Credential=)[^&\s]+"),
    re.compile(r"(?i)(X-Amz-Signature=)[0-9a-f]+"),
]
_NOISY = ("botocore", "boto3", "s3transfer", "urllib3")


class CredentialFilter(logging.Filter):
    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        # Short values would mask ordinary words ("testing" is moto's dummy key): 8+ characters.
        self.secrets = sorted({s for s in (secrets or []) if s and len(s) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def _known_secrets() -> list[str]:
    # Credentials from a profile or an instance role reach logs only inside request headers,
    # which the patterns mask; resolving them here could cost a metadata-service round trip.
    return [os.environ.get(k, "") for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]


def install(root: logging.Logger | None = None) -> CredentialFilter:
    """Mask credentials in everything the root logger's handlers write."""
    root = root or logging.getLogger()
    mask = CredentialFilter(_known_secrets())
    for handler in root.handlers:
        if not any(isinstance(f, CredentialFilter) for f in handler.filters):
            handler.addFilter(mask)
    for name in _NOISY:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    return mask
