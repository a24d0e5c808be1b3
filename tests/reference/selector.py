"""Reference label selector: upstream's grammar (k8s.io/apimachinery/pkg/labels) in plain Python."""

from __future__ import annotations

import re
from dataclasses import dataclass

_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_INT = re.compile(r"^[+-]?[0-9]+$")
_SPECIAL = set("=!(),<>")


def key_ok(key: str) -> bool:
    parts = key.split("/")
    if len(parts) > 2:
        return False
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not all(_DNS_LABEL.match(p) for p in prefix.split(".")):
            return False
    return 0 < len(name) <= 63 and bool(_QNAME.match(name))


def value_ok(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_QNAME.match(value)))


def _int(s: str) -> int | None:
    if not _INT.match(s):
        return None
    v = int(s)
    return v if -(2**63) <= v < 2**63 else None


@dataclass
class Req:
    key: str
    op: str  # =, ==, !=, in, notin, exists, !, >, <
    values: list[str]

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op in ("=", "==", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        lv = _int(v) if v is not None else None
        rv = _int(self.values[0])
        if lv is None or rv is None:
            return False
        return lv > rv if self.op == ">" else lv < rv

    def __str__(self) -> str:
        if self.op == "!":
            return "!" + self.key
        if self.op == "exists":
            return self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


class SelectorError(ValueError):
    pass


def _tokens(s: str) -> list[str]:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c in _SPECIAL:
            two = s[i : i + 2]
            tok = two if two in ("!=", "==") else c
            out.append(tok)
            i += len(tok)
        else:
            j = i
            while j < len(s) and s[j] not in " \t\r\n" and s[j] not in _SPECIAL:
                j += 1
            out.append(s[i:j])
            i = j
    return out


def _is_ident(tok: str | None) -> bool:
    return tok is not None and tok[0] not in _SPECIAL


def _new_req(key: str, op: str, values: list[str]) -> Req:
    values = sorted(set(values))
    if op in ("in", "notin") and not values:
        raise SelectorError("values set can't be empty")
    if op in (">", "<") and (len(values) != 1 or _int(values[0]) is None):
        raise SelectorError("the value must be an integer")
    if not all(value_ok(v) for v in values):
        raise SelectorError("invalid value")
    return Req(key, op, values)


def parse(s: str) -> list[Req]:
    """Parse the string form; raise SelectorError when the native parser would raise."""
    toks = _tokens(s)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str | None:
        nonlocal pos
        t = peek()
        pos += 1
        return t

    reqs: list[Req] = []
    if not toks:
        return reqs
    while True:
        t = take()
        op = None
        if t == "!":
            op = "!"
            t = take()
        if not _is_ident(t):
            raise SelectorError(f"expected identifier, found {t!r}")
        assert t is not None
        key = t
        if not key_ok(key):
            raise SelectorError(f"invalid key {key!r}")
        nxt = peek()
        if nxt is None or nxt == ",":
            reqs.append(Req(key, op or "exists", []))
        elif op == "!":
            raise SelectorError(f"found {nxt!r}, expected ',' or end")
        else:
            o = take()
            if o in ("in", "notin"):
                if take() != "(":
                    raise SelectorError("expected (")
                vals: list[str] = []
                if peek() == ")":
                    take()
                    vals = [""]
                elif peek() == "," or _is_ident(peek()):
                    # upstream's parseIdentifiersList, step for step
                    while True:
                        t2 = take()
                        if _is_ident(t2):
                            assert t2 is not None
                            vals.append(t2)
                            if peek() == ",":
                                continue
                            if peek() == ")":
                                break
                            raise SelectorError("expected ',' or ')'")
                        if t2 == ",":
                            if not vals:
                                vals.append("")
                            if peek() == ")":
                                vals.append("")
                                break
                            if peek() == ",":
                                take()
                                vals.append("")
                            continue
                        raise SelectorError(f"unexpected {t2!r} in value list")
                    if take() != ")":
                        raise SelectorError("expected )")
                else:
                    raise SelectorError("expected value list")
                reqs.append(_new_req(key, o, vals))
            elif o in ("=", "==", "!=", ">", "<"):
                v = peek()
                if v is None or v == ",":
                    val = ""
                elif _is_ident(v):
                    assert v is not None
                    val = v
                    take()
                else:
                    raise SelectorError(f"expected value, found {v!r}")
                reqs.append(_new_req(key, o, [val]))
            else:
                raise SelectorError(f"unknown operator {o!r}")
        t = take()
        if t is None:
            break
        if t != ",":
            raise SelectorError(f"found {t!r}, expected ',' or end")
        if not (_is_ident(peek()) or peek() == "!"):
            raise SelectorError("expected identifier after ','")
    reqs.sort(key=lambda r: r.key)
    return reqs


def to_string(reqs: list[Req]) -> str:
    return ",".join(str(r) for r in reqs)


def matches(reqs: list[Req], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def from_label_selector(obj: dict | None) -> list[Req] | None:
    """None means 'matches nothing'."""
    if obj is None:
        return None
    reqs = [_new_req(k, "=", [v]) for k, v in (obj.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in obj.get("matchExpressions") or []:
        if e["operator"] not in ops:
            raise SelectorError(f"{e['operator']!r} is not a valid label selector operator")
        op = ops[e["operator"]]
        vals = list(e.get("values") or [])
        if op in ("exists", "!") and vals:
            raise SelectorError("values set must be empty for exists and does not exist")
        if not key_ok(e["key"]):
            raise SelectorError("invalid key")
        reqs.append(_new_req(e["key"], op, vals))
    reqs.sort(key=lambda r: r.key)
    return reqs
