"""Authentication: who is making a request. Upstream's order, first match wins.

1. x509 client certificates (verified by the TLS layer against the cluster CA): CN = user,
   O = groups.
2. Bearer tokens from a static token file (CSV ``token,user,uid,"group1,group2"``).
3. ServiceAccount tokens: JWTs signed (ES256) with the cluster's SA key, bound to an audience,
   an expiry and optionally a pod; a token bound to a pod stops working when that pod is gone
   (the ``lookup`` callback answers whether the pod/secret still exists with the same uid).
4. Bootstrap tokens ``<id>.<secret>`` backed by Secrets ``kube-system/bootstrap-token-<id>``
   (user ``system:bootstrap:<id>``, group ``system:bootstrappers``), for nodes joining.

Every authenticated user also gets the group ``system:authenticated``. A request with no
credentials is ``system:anonymous``; a request with bad credentials is rejected (401).
"""

from __future__ import annotations

import base64
import csv
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from hyperkube.apiserver.auth.rbac import ANONYMOUS, UserInfo

AUTHENTICATED = "system:authenticated"
ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = ("https://kubernetes.default.svc.cluster.local", "api")


class Unauthorized(Exception):
    """Credentials were presented but are not valid (the API answers 401)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenSigner:
    """ES256 JWTs with the cluster's ServiceAccount key."""

    def __init__(self, private_key_pem: bytes | None = None, public_key_pem: bytes | None = None) -> None:
        self.key: ec.EllipticCurvePrivateKey | None = None
        if private_key_pem:
            k = serialization.load_pem_private_key(private_key_pem, None)
            assert isinstance(k, ec.EllipticCurvePrivateKey)
            self.key = k
            self.public = k.public_key()
        elif public_key_pem:
            p = serialization.load_pem_public_key(public_key_pem)
            assert isinstance(p, ec.EllipticCurvePublicKey)
            self.public = p
        else:
            raise ValueError("a private or public key is required")
        der = self.public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        self.kid = _b64url(digest.finalize())

    def sign(self, claims: dict) -> str:
        if self.key is None:
            raise ValueError("no private key to sign with")
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str) -> dict:
        """The claims of a token whose signature is ours (expiry and audience not checked here)."""
        try:
            h, p, sig = token.split(".")
            header = json.loads(_unb64url(h))
            if header.get("alg") != "ES256":
                raise Unauthorized("unsupported token algorithm")
            raw = _unb64url(sig)
            if len(raw) != 64:
                raise Unauthorized("invalid token signature")
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self.public.verify(der, f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_unb64url(p))
        except InvalidSignature as e:
            raise Unauthorized("invalid bearer token") from e
        except (ValueError, json.JSONDecodeError) as e:
            raise Unauthorized("invalid bearer token") from e
        if not isinstance(claims, dict):
            raise Unauthorized("invalid bearer token")
        return claims

    def service_account_token(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
        pod: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A TokenRequest-style token; returns (token, expiry unix time)."""
        now = int(now if now is not None else time.time())
        exp = now + max(expiration_seconds, 600)
        k8s: dict = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}}
        if pod:
            k8s["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {
            "aud": list(audiences or DEFAULT_AUDIENCES),
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": k8s,
        }
        return self.sign(claims), exp


@dataclass
class StaticToken:
    user: UserInfo


def load_token_file(path: str) -> dict[str, StaticToken]:
    """Upstream's --token-auth-file: token,user,uid[,"group1,group2"]."""
    tokens: dict[str, StaticToken] = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{lineno}: expected token,user,uid[,groups]")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            tokens[row[0]] = StaticToken(UserInfo(row[1], groups, row[2]))
    return tokens


# lookup(kind, namespace, name) -> the object's uid, or None when it does not exist
Lookup = Callable[[str, str, str], Awaitable[str | None]]
# bootstrap(token_id) -> the bootstrap Secret's data (decoded strings), or None
BootstrapLookup = Callable[[str], Awaitable[dict[str, str] | None]]


def _with_authenticated(u: UserInfo) -> UserInfo:
    if AUTHENTICATED in u.groups:
        return u
    return UserInfo(u.name, (*u.groups, AUTHENTICATED), u.uid, u.extra)


class Authenticator:
    def __init__(
        self,
        *,
        static_tokens: dict[str, StaticToken] | None = None,
        signer: TokenSigner | None = None,
        audiences: tuple[str, ...] = DEFAULT_AUDIENCES,
        lookup: Lookup | None = None,
        bootstrap: BootstrapLookup | None = None,
        allow_anonymous: bool = True,
    ) -> None:
        self.static_tokens = static_tokens or {}
        self.signer = signer
        self.audiences = audiences
        self.lookup = lookup
        self.bootstrap = bootstrap
        self.allow_anonymous = allow_anonymous

    async def authenticate(
        self, authorization: str | None, client_cert: tuple[str, list[str]] | None
    ) -> UserInfo:
        """The user of a request. Raises Unauthorized for bad credentials."""
        if client_cert is not None and client_cert[0]:
            name, groups = client_cert
            return _with_authenticated(UserInfo(name, tuple(groups)))
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(
                    "unsupported authorization scheme; use a bearer token or a client certificate"
                )
            return _with_authenticated(await self._token(token.strip()))
        if not self.allow_anonymous:
            raise Unauthorized("no credentials")
        return ANONYMOUS

    async def _token(self, token: str) -> UserInfo:
        for known, entry in self.static_tokens.items():
            if hmac.compare_digest(known, token):
                return entry.user
        if token.count(".") == 2 and self.signer is not None:
            return await self._service_account(token)
        if token.count(".") == 1 and self.bootstrap is not None:
            return await self._bootstrap(token)
        raise Unauthorized("invalid bearer token")

    async def _service_account(self, token: str) -> UserInfo:
        assert self.signer is not None
        claims = self.signer.verify(token)
        now = time.time()
        if claims.get("iss") != ISSUER:
            raise Unauthorized("invalid bearer token: wrong issuer")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            raise Unauthorized("invalid bearer token: token has expired")
        if claims.get("nbf", 0) > now + 60:
            raise Unauthorized("invalid bearer token: token not valid yet")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a in self.audiences for a in auds):
            raise Unauthorized("invalid bearer token: token audiences do not match")
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        if self.lookup is not None:
            if await self.lookup("serviceaccounts", ns, sa.get("name", "")) != sa.get("uid"):
                raise Unauthorized("invalid bearer token: service account has been deleted")
            pod = k8s.get("pod")
            if pod and await self.lookup("pods", ns, pod.get("name", "")) != pod.get("uid"):
                raise Unauthorized(f'invalid bearer token: pod "{pod.get("name")}" has been deleted')
        extra = {}
        if k8s.get("pod"):
            extra["authentication.kubernetes.io/pod-name"] = [k8s["pod"].get("name", "")]
            extra["authentication.kubernetes.io/pod-uid"] = [k8s["pod"].get("uid", "")]
        return UserInfo(
            f"system:serviceaccount:{ns}:{sa.get('name', '')}",
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}"),
            sa.get("uid", ""),
            extra,
        )

    async def _bootstrap(self, token: str) -> UserInfo:
        assert self.bootstrap is not None
        token_id, _, secret = token.partition(".")
        data = await self.bootstrap(token_id)
        if not data or not hmac.compare_digest(data.get("token-secret", ""), secret):
            raise Unauthorized("invalid bearer token")
        if data.get("usage-bootstrap-authentication") != "true":
            raise Unauthorized("invalid bearer token: not usable for authentication")
        exp = data.get("expiration")
        if exp:
            import datetime as dt

            when = dt.datetime.fromisoformat(exp.replace("Z", "+00:00"))
            if when.timestamp() < time.time():
                raise Unauthorized("invalid bearer token: token has expired")
        extra_groups = tuple(g for g in data.get("auth-extra-groups", "").split(",") if g)
        return UserInfo(f"system:bootstrap:{token_id}", ("system:bootstrappers", *extra_groups))
