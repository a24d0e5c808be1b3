"""Encryption at rest for chosen resources (Secrets), as upstream's ``--encryption-provider-config``.

The configuration file is upstream's ``EncryptionConfiguration``::

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]
        providers:
          - aesgcm:
              keys:
                - name: key1
                  secret: <base64 of 16, 24 or 32 random bytes>   # head -c 32 /dev/urandom | base64
          - identity: {}

The first provider encrypts every write; all listed providers are tried on reads, so keys can be
rotated (put the new key first, keep the old one after it, rewrite the secrets, drop the old key)
and a cluster can be moved to or from encryption (``identity`` reads plain values). A value is
stored as ``k8s:enc:aesgcm:v1:<key name>:`` + 12-byte nonce + AES-GCM ciphertext, with the
storage key as associated data (a ciphertext copied under another key does not decrypt).
:class:`EncryptedStore` wraps any :class:`~hyperkube.storage.interface.Store`; everything above it
sees plain values. The key file must be protected like the CA key (mode 0600).
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyperkube.storage.interface import Event, KeyValue, ListResult, StorageError, Store

PREFIX = b"k8s:enc:aesgcm:v1:"


class DecryptError(StorageError):
    pass


@dataclasses.dataclass
class Providers:
    # (name, AESGCM) in order; identity: plain values readable (and written if first)
    keys: list[tuple[str, AESGCM]]
    identity_first: bool
    identity_allowed: bool


def load_config(path: str) -> dict[str, Providers]:
    """resource prefix (``/registry/secrets/``) -> providers. ValueError with the reason."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ValueError(f"cannot read the encryption config {path}: {e.strerror}") from None
    if doc.get("kind") != "EncryptionConfiguration":
        raise ValueError(f"{path}: kind must be EncryptionConfiguration")
    out: dict[str, Providers] = {}
    for i, entry in enumerate(doc.get("resources") or []):
        keys: list[tuple[str, AESGCM]] = []
        identity_first = identity_allowed = False
        providers = entry.get("providers") or []
        if not providers:
            raise ValueError(f"{path}: resources[{i}].providers: at least one provider is required")
        for j, p in enumerate(providers):
            if "identity" in p:
                identity_allowed = True
                identity_first = identity_first or j == 0
            elif "aesgcm" in p:
                for k in (p["aesgcm"] or {}).get("keys") or []:
                    try:
                        secret = base64.b64decode(k["secret"], validate=True)
                    except Exception:
                        raise ValueError(
                            f"{path}: aesgcm key {k.get('name')!r}: secret is not valid base64"
                        ) from None
                    if len(secret) not in (16, 24, 32):
                        raise ValueError(
                            f"{path}: aesgcm key {k.get('name')!r} is {len(secret)} bytes; use 16, 24 or 32"
                        )
                    if not k.get("name") or ":" in k["name"]:
                        raise ValueError(f"{path}: every aesgcm key needs a name without ':'")
                    keys.append((k["name"], AESGCM(secret)))
            else:
                raise ValueError(f"{path}: unsupported provider {sorted(p)}; use aesgcm or identity")
        for r in entry.get("resources") or []:
            plural = r.split(".")[0]
            out[f"/registry/{plural}/"] = Providers(keys, identity_first or not keys, identity_allowed)
    return out


class EncryptedStore:
    def __init__(self, inner: Store, config: dict[str, Providers]) -> None:
        self.inner = inner
        self.config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _providers(self, key: str) -> Providers | None:
        for prefix, p in self.config.items():
            if key.startswith(prefix):
                return p
        return None

    def encrypt(self, key: str, value: bytes) -> bytes:
        p = self._providers(key)
        if p is None or p.identity_first:
            return value
        name, aead = p.keys[0]
        nonce = os.urandom(12)
        return PREFIX + name.encode() + b":" + nonce + aead.encrypt(nonce, value, key.encode())

    def decrypt(self, key: str, value: bytes | None) -> bytes | None:
        if value is None:
            return None
        p = self._providers(key)
        if not value.startswith(PREFIX):
            if p is not None and not p.identity_allowed:
                raise DecryptError(f"{key}: stored unencrypted but the identity provider is not configured")
            return value
        if p is None:
            raise DecryptError(f"{key}: stored encrypted but no encryption is configured for it")
        rest = value[len(PREFIX) :]
        name, _, blob = rest.partition(b":")
        for kname, aead in p.keys:
            if kname.encode() == name:
                try:
                    return aead.decrypt(blob[:12], blob[12:], key.encode())
                except InvalidTag:
                    raise DecryptError(f"{key}: decryption with key {kname!r} failed") from None
        raise DecryptError(f"{key}: encrypted with key {name.decode()!r}, which is not configured")

    def _kv(self, kv: KeyValue) -> KeyValue:
        return dataclasses.replace(kv, value=self.decrypt(kv.key, kv.value) or b"")

    async def get(self, key: str, revision: int | None = None) -> KeyValue:
        return self._kv(await self.inner.get(key, revision))

    async def list(self, prefix: str, **kw: Any) -> ListResult:
        r = await self.inner.list(prefix, **kw)
        return dataclasses.replace(r, items=[self._kv(kv) for kv in r.items])

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv = await self.inner.create(key, self.encrypt(key, value))
        return dataclasses.replace(kv, value=value)

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        kv = await self.inner.update(key, self.encrypt(key, value), expected_mod_revision)
        return dataclasses.replace(kv, value=value)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        return self._kv(await self.inner.delete(key, expected_mod_revision))

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        async for ev in self.inner.watch(prefix, from_revision):
            if self._providers(ev.key) is None:
                yield ev
            else:
                yield dataclasses.replace(
                    ev, value=self.decrypt(ev.key, ev.value), prev_value=self.decrypt(ev.key, ev.prev_value)
                )
