"""Reviewer accounts, sign-in sessions and CSRF tokens, all in the queue's database.

Passwords are stored as scrypt hashes (the standard library's, so no extra dependency) with
N=2^17, r=8, p=1 (OWASP's password storage cheat sheet); a hash made with weaker parameters
is replaced at the account's next successful sign-in.
A session cookie carries a random token; the database keeps only the token's SHA-256,
so a leaked database does not let anyone sign in. Each session has its own CSRF token,
which every form posts back.

Failed sign-ins are counted per user name and per client address in the database (several
app processes may serve one queue); past a limit, that name or address is refused for a
cooldown. Removing a reviewer disables the account and ends its sessions but keeps the row,
since the audit trail names it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ocrflow.errors import ConfigurationError
from ocrflow.settings import ReviewOptions
from ocrflow.store import ReviewerRow, SessionRow, SignInFailureRow, now

_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
_SCRYPT_MAXMEM = 256 * 1024 * 1024
"""scrypt needs 128 * r * N bytes (128 MiB here); OpenSSL's default ceiling is 32 MiB."""
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD_LENGTH = 8


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(
    password: str, *, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"], p: int = _SCRYPT["p"]
) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_SCRYPT_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


def needs_rehash(encoded: str) -> bool:
    """True when a stored hash was made with other parameters than today's (weaker ones, so far)."""
    try:
        scheme, n, r, p, *_ = encoded.split("$")
        return scheme != "scrypt" or (int(n), int(r), int(p)) != (_SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"])
    except ValueError:
        return True


@cache
def _dummy_hash() -> str:
    # Checked when a username is unknown, so a wrong name costs as long as a wrong password.
    return hash_password(secrets.token_hex(8))


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
        """Create a reviewer, or set a new password (enabling a removed one); True if the account is new."""
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
            row.disabled_at = None
        return created

    def remove_user(self, username: str) -> bool:
        """Disable a reviewer and end their sessions at once; False if there is no such reviewer.

        The row stays (audit events and decisions name it); only sign-in is taken away.
        """
        with Session(self.engine) as session, session.begin():
            row = session.get(ReviewerRow, username, with_for_update=True)
            if row is None:
                return False
            if row.disabled_at is None:
                row.disabled_at = now()
            session.execute(delete(SessionRow).where(SessionRow.username == username))
        return True

    def set_groups(self, username: str, groups: list[str]) -> None:
        """The groups a reviewer belongs to (items assigned to ``group:NAME`` come first for them)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ReviewerRow, username, with_for_update=True)
            if row is None:
                raise ConfigurationError(f"there is no reviewer {username}")
            row.groups = sorted({g.strip() for g in groups if g.strip()})

    def usernames(self) -> list[str]:
        """The reviewers who can sign in."""
        with Session(self.engine) as session:
            query = select(ReviewerRow.username).where(ReviewerRow.disabled_at.is_(None))
            return list(session.scalars(query.order_by(ReviewerRow.username)))

    def authenticate(self, username: str, password: str) -> bool:
        with Session(self.engine) as session:
            row = session.get(ReviewerRow, username)
        if row is None or row.disabled_at is not None:
            verify_password(password, _dummy_hash())
            return False
        if not verify_password(password, row.password_hash):
            return False
        if needs_rehash(row.password_hash):
            self._rehash(username, row.password_hash, password)
        return True

    def _rehash(self, username: str, old_hash: str, password: str) -> None:
        """Store the password under today's parameters, unless it was changed meanwhile."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ReviewerRow, username, with_for_update=True)
            if row is not None and row.password_hash == old_hash:
                row.password_hash = hash_password(password)

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
            # The reviewer's row is checked too: a session opened while the account was being
            # removed must not outlive the removal.
            row = session.execute(
                select(SessionRow.username, SessionRow.csrf_token)
                .join(ReviewerRow, ReviewerRow.username == SessionRow.username)
                .where(
                    SessionRow.token_hash == token_hash(token),
                    SessionRow.expires_at > now(),
                    ReviewerRow.disabled_at.is_(None),
                )
            ).one_or_none()
        return None if row is None else SignedIn(row.username, row.csrf_token)

    def close_session(self, token: str | None) -> None:
        if not token:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class SignInThrottle:
    """Counts failed sign-ins per user name and per client address; refuses either once over its limit.

    Unknown user names are counted like real ones, so a refusal says nothing about who exists.
    """

    def __init__(self, engine: Engine, options: ReviewOptions) -> None:
        self.engine = engine
        self.options = options
        self.window = timedelta(seconds=options.sign_in_window_seconds)
        self.cooldown = timedelta(seconds=options.sign_in_cooldown_seconds)

    def _limits(self, username: str, address: str | None) -> dict[str, int]:
        limits = {f"user:{username[:128]}": self.options.sign_in_attempts}
        if address:
            limits[f"addr:{address[:128]}"] = self.options.sign_in_attempts_per_address
        return limits

    def locked_until(self, username: str, address: str | None) -> datetime | None:
        """When the later of the name's and the address's locks ends, if either is locked now."""
        with Session(self.engine) as session:
            ends = session.scalars(
                select(SignInFailureRow.locked_until).where(
                    SignInFailureRow.key.in_(self._limits(username, address)),
                    SignInFailureRow.locked_until > now(),
                )
            ).all()
        return max(ends, default=None)

    def failed(self, username: str, address: str | None) -> None:
        for key, limit in self._limits(username, address).items():
            for _ in range(3):
                try:
                    self._count(key, limit)
                    break
                except IntegrityError:
                    continue  # another process counted this key's first failure at the same time

    def _count(self, key: str, limit: int) -> None:
        current = now()
        with Session(self.engine) as session, session.begin():
            # Counts whose window has passed, and locks that are over, start again from nothing.
            session.execute(
                delete(SignInFailureRow).where(
                    or_(
                        and_(
                            SignInFailureRow.locked_until.is_(None),
                            SignInFailureRow.first_failed_at <= current - self.window,
                        ),
                        SignInFailureRow.locked_until <= current,
                    )
                )
            )
            row = session.get(SignInFailureRow, key, with_for_update=True)
            if row is None:
                row = SignInFailureRow(key=key, failures=0, first_failed_at=current)
                session.add(row)
            row.failures += 1
            if row.failures >= limit:
                row.locked_until = current + self.cooldown

    def succeeded(self, username: str) -> None:
        """A right password clears the name's count.

        Not the address's: one valid account must not let its holder reset the count of an
        address that is guessing at other accounts.
        """
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SignInFailureRow).where(SignInFailureRow.key == f"user:{username[:128]}"))
