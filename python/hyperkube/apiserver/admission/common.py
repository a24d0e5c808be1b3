"""What every admission plugin shares: the request's user, the context, the lookup cache."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperkube.api import errors
from hyperkube.api.errors import ApiError
from hyperkube.api.registry import Resource
from hyperkube.apiserver.auth.rbac import UserInfo

if TYPE_CHECKING:
    from hyperkube.apiserver.rest import Registry
    from hyperkube.apiserver.security import Security

Obj = dict[str, Any]

request_user: ContextVar[UserInfo | None] = ContextVar("request_user", default=None)

CACHE_TTL = 2.0


class Cache:
    """What admission looks up on every pod create (ServiceAccounts, LimitRanges, quotas,
    PriorityClasses), kept for a short TTL, as upstream's plugins read informer caches.
    Creates and updates of those kinds pass admission and drop their namespace's entries at
    once; a delete is seen within the TTL."""

    def __init__(self, ttl: float = CACHE_TTL) -> None:
        self.ttl = ttl
        self.entries: dict[tuple[str, str, str], tuple[float, Any]] = {}

    async def get(self, key: tuple[str, str, str], load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self.entries.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        self.entries[key] = (now + self.ttl, value)
        return value

    def invalidate(self, kind: str, namespace: str) -> None:
        for k in [k for k in self.entries if k[0] == kind and k[1] == namespace]:
            del self.entries[k]


@dataclass
class Context:
    operation: str  # CREATE | UPDATE
    res: Resource
    namespace: str
    subresource: str
    user: UserInfo | None
    dry_run: bool
    registry: Registry
    security: Security | None
    cache: Cache


def forbidden(ctx: Context, obj: Obj, why: str) -> ApiError:
    name = (obj.get("metadata") or {}).get("name") or ""
    return errors.forbidden(ctx.res.plural, ctx.res.group, name, why)
