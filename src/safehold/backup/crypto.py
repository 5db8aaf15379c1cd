"""Encryption of everything that leaves the machine (AES-256-GCM), and the recovery
kit. Fails closed: without the right key nothing is written to a replica, and
nothing read from one is trusted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safehold.errors import SafeholdError

MAGIC = b"SHB1"  # safehold backup object, format 1
KIT_FORMAT = 1


class KeyError_(SafeholdError):
    """The key is missing or does not match the replica."""


class CorruptObject(SafeholdError):
    """An object failed authentication: flipped, truncated or swapped bytes."""


@dataclass(frozen=True)
class Key:
    secret: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"safehold-fingerprint" + self.secret).hexdigest()[:16]

    def seal(self, plaintext: bytes, name: str) -> bytes:
        """Compress, then encrypt; the object name is authenticated too, so an
        object copied to another name fails to open."""
        return self._encrypt(zstandard.ZstdCompressor(level=3).compress(plaintext), name)

    def seal_pieces(self, pieces: Iterable[bytes], size: int, name: str) -> bytes:
        """``seal`` of the plaintext ``b"".join(pieces)`` without ever holding it: only
        its compressed form is. ``size`` is the plaintext's length, written in the zstd
        frame as ``seal`` writes it; a plaintext of another length fails (ZstdError)."""
        packer = zstandard.ZstdCompressor(level=3).compressobj(size=size)
        compressed = [packer.compress(piece) for piece in pieces]
        compressed.append(packer.flush())
        return self._encrypt(b"".join(compressed), name)

    def _encrypt(self, body: bytes, name: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return MAGIC + nonce + AESGCM(self.secret).encrypt(nonce, body, name.encode())

    def open(self, data: bytes, name: str) -> bytes:
        return zstandard.ZstdDecompressor().decompress(self.authenticate(data, name),
                                                       max_output_size=1 << 31)

    def authenticate(self, data: bytes, name: str) -> bytes:
        """The compressed plaintext of an object, once it authenticates. Decrypted whole
        (AES-GCM proves the bytes only at their end, and nothing unproven may be read);
        it is a fraction of the plaintext (a snapshot's: ~1/8), which ``Plaintext``
        decompresses piece by piece."""
        if len(data) < len(MAGIC) + 12 + 16 or not data.startswith(MAGIC):
            raise CorruptObject(f"{name}: not a safehold object or truncated")
        nonce = data[4:16]
        try:
            return AESGCM(self.secret).decrypt(nonce, data[16:], name.encode())
        except InvalidTag as exc:
            raise CorruptObject(f"{name}: authentication failed (corrupted, truncated, "
                                "or encrypted with another key)") from exc

    def check(self, data: bytes, name: str) -> None:
        """``open`` without holding the plaintext: authenticated, then decompressed to
        its end and dropped (a damaged frame fails as CorruptObject)."""
        plain = Plaintext(self.authenticate(data, name), name)
        while plain.read(1 << 20):
            pass

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def blob_name(self, sha256: str) -> str:
        """Blob objects are named by a keyed hash, so the replica does not reveal
        which well-known files a user has."""
        return hmac.new(self.secret, sha256.encode(), hashlib.sha256).hexdigest()[:40]


class Plaintext:
    """An authenticated object's plaintext (``Key.authenticate``), decompressed as it
    is read; a damaged frame is CorruptObject, as from ``Key.open``."""

    def __init__(self, compressed: bytes, name: str) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(compressed)
        self.name = name

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the plaintext."""
        out = b""
        try:
            while len(out) < size and (piece := self._reader.read(size - len(out))):
                out += piece
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"{self.name}: authenticates but does not decompress") from exc
        return out


def new_key() -> Key:
    return Key(secrets.token_bytes(32))


def write_kit(path: Path, key: Key, replicas: list[str], lineage: str) -> None:
    kit = {"format": KIT_FORMAT, "kind": "safehold recovery kit",
           "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "key": base64.b64encode(key.secret).decode(), "fingerprint": key.fingerprint,
           "replicas": replicas, "lineage": lineage,
           "restore": "safehold restore --from REPLICA_URL --kit THIS_FILE --into NEW_DATA_DIR "
                      "(a server on PostgreSQL: add --database-url postgresql://USER@HOST/NEW_DB, "
                      "a new, empty database)"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(kit, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_kit(path: Path) -> tuple[Key, list[str]]:
    try:
        kit = json.loads(path.read_text())
        key = Key(base64.b64decode(kit["key"]))
    except FileNotFoundError as exc:
        raise KeyError_(f"recovery kit {path} does not exist") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"{path} is not a safehold recovery kit") from exc
    if kit.get("format") != KIT_FORMAT or len(key.secret) != 32:
        raise KeyError_(f"{path}: unsupported recovery kit format {kit.get('format')}")
    if kit.get("fingerprint") != key.fingerprint:
        raise KeyError_(f"{path}: the key does not match its fingerprint; the kit is damaged")
    return key, list(kit.get("replicas", []))
