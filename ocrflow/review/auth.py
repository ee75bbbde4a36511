"""Reviewer accounts, sign-in sessions and CSRF tokens, all in the queue's database.

Passwords are stored as scrypt hashes (the standard library's, so no extra dependency).
A session cookie carries a random token; the database keeps only the token's SHA-256,
so a leaked database does not let anyone sign in. Each session has its own CSRF token,
which every form posts back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ocrflow.errors import ConfigurationError
from ocrflow.store import ReviewerRow, SessionRow, now

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD_LENGTH = 8


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


# Checked when a username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    username: str
    csrf_token: str


class Accounts:
    def __init__(self, engine: Engine, session_hours: float = 12.0) -> None:
        self.engine = engine
        self.session_length = timedelta(hours=session_hours)

    def add_user(self, username: str, password: str) -> bool:
        """Create a reviewer, or set a new password; True if the account is new."""
        if not _USERNAME.fullmatch(username):
            raise ConfigurationError("a username is 1-64 letters, digits or _ . @ -")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigurationError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        with Session(self.engine) as session, session.begin():
            row = session.get(ReviewerRow, username)
            created = row is None
            if created:
                row = ReviewerRow(username=username)
                session.add(row)
            else:
                # A new password signs the old sessions out.
                session.execute(delete(SessionRow).where(SessionRow.username == username))
            row.password_hash = hash_password(password)
        return created

    def usernames(self) -> list[str]:
        with Session(self.engine) as session:
            return list(session.scalars(select(ReviewerRow.username).order_by(ReviewerRow.username)))

    def authenticate(self, username: str, password: str) -> bool:
        with Session(self.engine) as session:
            row = session.get(ReviewerRow, username)
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, row.password_hash)

    def open_session(self, username: str) -> tuple[str, SignedIn]:
        """A new session: the token for the cookie, and who it signs in."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.expires_at <= now()))
            session.add(
                SessionRow(
                    token_hash=token_hash(token),
                    username=username,
                    csrf_token=csrf,
                    expires_at=now() + self.session_length,
                )
            )
        return token, SignedIn(username, csrf)

    def signed_in(self, token: str | None) -> SignedIn | None:
        if not token:
            return None
        with Session(self.engine) as session:
            row = session.get(SessionRow, token_hash(token))
            if row is None or row.expires_at <= now():
                return None
            return SignedIn(row.username, row.csrf_token)

    def close_session(self, token: str | None) -> None:
        if not token:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())
