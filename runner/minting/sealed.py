"""System tokens sealed in a PostgreSQL database, so any process on any host can use them.

Several ``forge-runner serve`` replicas behind a load balancer each receive some of Forge's
invocations, so each holds only some of the system tokens; a run on another host needs the
freshest one whichever replica got it. Every token a replica receives is therefore written to
``sealed_tokens`` sealed with AES-GCM (256-bit key, a fresh 96-bit nonce per row), the
installation's ID as associated data: a row copied to another installation does not open. The
key comes from an environment variable or a file (``SealKey.load``), never from the database;
the database holds no token in the clear, only ciphertext, its ``exp`` and an HMAC tag that
finds the same token again (for redeliveries and refusals) and reveals nothing without the key.

The reader keeps ``installation_tokens``'s rules: the freshest valid JWT by ``exp``, else the
newest opaque token; expired and refused ones are never handed out, and a refused token stays
refused when it is delivered again. Nothing here logs a token or the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any, LiteralString

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import AsyncConnection

from runner.config.tokensource import SystemTokenSource
from runner.errors import SealKeyError
from runner.logs.redact import register_secret
from runner.tokenroute import SecretRef

# Forge's system tokens live at most 4 hours (atlassian-facts.md section 2).
MAX_LIFETIME_S = 4 * 3600.0
# Expired rows are deleted this long after their exp, when the installation gets a new one.
KEEP_EXPIRED_S = 3600.0
KEY_BYTES = 32
NONCE_BYTES = 12
_CHECK_TEXT = b"forge-runner seal check"
_CHECK_AAD = b"forge-runner:check"

# The tables, as one migration step of the serve database (``runner.remote.servedb``).
SEALED_TABLES: tuple[LiteralString, ...] = (
    """CREATE TABLE sealed_tokens (
        installation_id text NOT NULL,
        tag text NOT NULL,
        expires_at double precision,
        received_at double precision NOT NULL,
        nonce bytea NOT NULL,
        ciphertext bytea NOT NULL,
        refused boolean NOT NULL DEFAULT false,
        PRIMARY KEY (installation_id, tag)
    )""",
    # One row sealed with the key the first replica started with: a replica or run given
    # another key finds out when it starts, not when it reads a token.
    """CREATE TABLE sealed_check (
        id integer PRIMARY KEY,
        nonce bytea NOT NULL,
        ciphertext bytea NOT NULL
    )""",
)


@dataclass(frozen=True)
class SealKey:
    """An AES-256-GCM key and the HMAC key derived from it; the repr shows neither."""

    key: bytes = field(repr=False)
    where: str = ""

    @classmethod
    def load(cls, ref: SecretRef) -> SealKey:
        """The key ``ref`` names: 32 bytes written as base64 (standard or URL-safe) or hex."""
        text = ref.read()
        where = ref.describe()
        if not text:
            raise SealKeyError(f"no seal key in {where}; set it to 32 random bytes in base64 "
                               "(python3 -c \"import os,base64; print(base64.b64encode("
                               "os.urandom(32)).decode())\"), the same on every replica")
        register_secret(text)
        raw = _decode(text)
        if raw is None or len(raw) != KEY_BYTES:
            raise SealKeyError(f"the seal key in {where} is not 32 bytes in base64 or hex; "
                               "set it to the key every replica uses")
        return cls(raw, where)

    @classmethod
    def generate(cls) -> SealKey:
        return cls(os.urandom(KEY_BYTES), "memory")

    def encoded(self) -> str:
        """The key as base64, for a test or an operator to put in a variable or file."""
        return base64.b64encode(self.key).decode()

    def seal(self, installation_id: str, token: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return nonce, AESGCM(self.key).encrypt(nonce, token.encode(), _aad(installation_id))

    def unseal(self, installation_id: str, nonce: bytes, ciphertext: bytes) -> str:
        try:
            plain = AESGCM(self.key).decrypt(nonce, ciphertext, _aad(installation_id))
        except InvalidTag:
            raise self._wrong() from None
        token = plain.decode()
        register_secret(token)
        return token

    def tag(self, token: str) -> str:
        """Who a token is, for finding it again: an HMAC under a key derived from the seal key."""
        subkey = hmac.new(self.key, b"forge-runner token tag", hashlib.sha256).digest()
        return hmac.new(subkey, token.encode(), hashlib.sha256).hexdigest()

    def _wrong(self) -> SealKeyError:
        return SealKeyError(f"the seal key in {self.where} does not open the system tokens in "
                            "the database (they were sealed with another key); set the key "
                            "every serve replica uses")


def _aad(installation_id: str) -> bytes:
    return b"forge-runner:system-token:" + installation_id.encode()


def _decode(text: str) -> bytes | None:
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(text.encode() + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
    return None


Conn = AsyncConnection[tuple[Any, ...]]


async def check_key(conn: Conn, key: SealKey) -> None:
    """Seal the check row with ``key`` if there is none, else open it: SealKeyError when the
    database's tokens were sealed with another key."""
    cur = await conn.execute("SELECT nonce, ciphertext FROM sealed_check WHERE id = 1")
    row = await cur.fetchone()
    if row is None:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.key).encrypt(nonce, _CHECK_TEXT, _CHECK_AAD)
        await conn.execute("INSERT INTO sealed_check VALUES (1, %s, %s) ON CONFLICT DO NOTHING",
                           (nonce, sealed))
        return
    try:
        AESGCM(key.key).decrypt(bytes(row[0]), bytes(row[1]), _CHECK_AAD)
    except InvalidTag:
        raise key._wrong() from None


async def keep(conn: Conn, key: SealKey, installation_id: str, token: str,
               expires_at: float | None, *, leeway_s: float) -> bool:
    """Store ``token`` sealed, unless it is held already (refused or not) or claims an ``exp``
    later than Forge's 4 h allow (the header's exp is a claim nobody vouched for). True when a
    row was written. The database's clock judges."""
    nonce, ciphertext = key.seal(installation_id, token)
    cur = await conn.execute(
        """INSERT INTO sealed_tokens
               (installation_id, tag, expires_at, received_at, nonce, ciphertext)
           SELECT %(inst)s, %(tag)s, %(exp)s, extract(epoch from now()), %(nonce)s, %(ct)s
           WHERE %(exp)s::float8 IS NULL
              OR %(exp)s::float8 <= extract(epoch from now()) + %(latest)s
           ON CONFLICT (installation_id, tag) DO NOTHING
           RETURNING 1""",
        {"inst": installation_id, "tag": key.tag(token), "exp": expires_at, "nonce": nonce,
         "ct": ciphertext, "latest": MAX_LIFETIME_S + leeway_s})
    kept = await cur.fetchone() is not None
    if kept:
        await conn.execute(
            "DELETE FROM sealed_tokens WHERE installation_id = %s "
            "AND expires_at < extract(epoch from now()) - %s", (installation_id, KEEP_EXPIRED_S))
    return kept


async def freshest(conn: Conn, key: SealKey, installation_id: str
                   ) -> tuple[str, float | None] | None:
    """The installation's freshest unexpired, unrefused token and its exp, or None."""
    cur = await conn.execute(
        """SELECT nonce, ciphertext, expires_at FROM sealed_tokens
           WHERE installation_id = %s AND NOT refused
             AND (expires_at IS NULL OR expires_at > extract(epoch from now()))
           ORDER BY expires_at IS NOT NULL DESC, expires_at DESC, received_at DESC
           LIMIT 1""", (installation_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    token = key.unseal(installation_id, bytes(row[0]), bytes(row[1]))
    return token, row[2]


async def refuse(conn: Conn, key: SealKey, installation_id: str, token: str) -> bool:
    """The gateway refused ``token``: never hand it out again, whoever asks. True when held."""
    cur = await conn.execute(
        "UPDATE sealed_tokens SET refused = true WHERE installation_id = %s AND tag = %s "
        "RETURNING 1", (installation_id, key.tag(token)))
    return await cur.fetchone() is not None


def source_key(source: SystemTokenSource) -> SealKey:
    """The key a sealed source names (or the one serve handed its own runs in memory)."""
    if source.seal_key_value:
        register_secret(source.seal_key_value)
        return SealKey(base64.b64decode(source.seal_key_value), "serve's own key")
    return SealKey.load(source.seal_key or SecretRef())


async def read_source(source: SystemTokenSource, refused: list[str]) -> str:
    """The freshest token of ``source``'s installation ("" when there is none yet), after
    marking each token of ``refused`` refused (the list is emptied as they are told).
    SealKeyError for a missing or wrong key; psycopg.Error when the database can't be read."""
    key = source_key(source)
    installation = source.installation_id or ""
    conn = await AsyncConnection.connect(source.sealed or "", autocommit=True,
                                         connect_timeout=10)
    async with conn:
        await check_key(conn, key)
        while refused:
            await refuse(conn, key, installation, refused[0])
            refused.pop(0)
        found = await freshest(conn, key, installation)
    return found[0] if found else ""
