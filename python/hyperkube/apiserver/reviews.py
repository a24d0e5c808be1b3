"""Endpoints the security layer answers itself: access reviews, token reviews, TokenRequest.

- ``authorization.k8s.io/v1``: SelfSubjectAccessReview (``kubectl auth can-i``),
  SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectRulesReview
  (``kubectl auth can-i --list``), evaluated by the same authorizers as real requests.
- ``authentication.k8s.io/v1``: SelfSubjectReview (``kubectl auth whoami``) and TokenReview.
- ``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`` (TokenRequest): a signed JWT
  for the account, bound to a pod (or a secret) when ``boundObjectRef`` says so, so it stops
  working when that object is deleted. A kubelet may only request tokens for pods bound to it.

None of these objects is stored: the request's body comes back with ``status`` filled in.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hyperkube.api import errors
from hyperkube.api.errors import ApiError
from hyperkube.api.registry import resource
from hyperkube.apiserver.auth.authn import Unauthorized
from hyperkube.apiserver.auth.node import node_name
from hyperkube.apiserver.auth.rbac import Attributes, UserInfo

if TYPE_CHECKING:
    from hyperkube.apiserver.security import Security

MAX_BODY = 1024 * 1024


async def _body(request: web.Request, kind: str, api_version: str) -> dict[str, Any]:
    from hyperkube.apiserver.app import parse_body, read_body

    body = parse_body(await read_body(request, MAX_BODY), request.headers.get("Content-Type", ""))
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a {kind} object")
    if body.get("kind") not in (None, kind):
        raise errors.bad_request(
            f'{body.get("kind")} in version "{api_version.split("/")[-1]}" cannot be handled as a {kind}'
        )
    spec = body.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise errors.bad_request("spec must be an object")
    body["apiVersion"], body["kind"] = api_version, kind
    body.setdefault("metadata", {})
    if not isinstance(body["metadata"], dict):
        raise errors.bad_request("metadata must be an object")
    body.setdefault("spec", {})
    return body


def _resp(obj: dict[str, Any], status: int = 201) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise errors.bad_request(f"{key} must be a string")
    return v


def _review_attributes(user: UserInfo, spec: dict[str, Any], kind: str) -> Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        return Attributes(
            user,
            _str(ra, "verb"),
            resource_request=True,
            namespace=_str(ra, "namespace"),
            api_group=_str(ra, "group"),
            api_version=_str(ra, "version"),
            resource=_str(ra, "resource"),
            subresource=_str(ra, "subresource"),
            name=_str(ra, "name"),
        )
    if isinstance(nra, dict):
        return Attributes(user, _str(nra, "verb"), resource_request=False, path=_str(nra, "path"))
    raise errors.invalid(
        kind,
        "authorization.k8s.io",
        "",
        [
            {
                "field": "spec.resourceAttributes",
                "reason": "FieldValueRequired",
                "message": "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            }
        ],
    )


async def serve(sec: Security, request: web.Request, a: Attributes) -> web.Response:
    user: UserInfo = request["user"]
    group, res = a.api_group, a.resource
    av = f"{group}/v1"
    if a.api_version not in ("v1",) or a.name:
        raise errors.not_found(res, group, a.name)
    if group == "authorization.k8s.io" and res in (
        "selfsubjectaccessreviews",
        "subjectaccessreviews",
        "localsubjectaccessreviews",
    ):
        kind = {
            "selfsubjectaccessreviews": "SelfSubjectAccessReview",
            "subjectaccessreviews": "SubjectAccessReview",
            "localsubjectaccessreviews": "LocalSubjectAccessReview",
        }[res]
        if (res == "localsubjectaccessreviews") != bool(a.namespace):
            raise errors.not_found(res, group, "")
        body = await _body(request, kind, av)
        spec = body["spec"]
        if res == "selfsubjectaccessreviews":
            who = user
        else:
            groups = spec.get("groups") or []
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise errors.bad_request("spec.groups must be a list of strings")
            who = UserInfo(_str(spec, "user"), tuple(groups), _str(spec, "uid"))
            if not who.name and not who.groups:
                raise errors.invalid(
                    kind,
                    group,
                    "",
                    [
                        {
                            "field": "spec.user",
                            "reason": "FieldValueRequired",
                            "message": "at least one of user or group must be specified",
                        }
                    ],
                )
        attrs = _review_attributes(who, spec, kind)
        if res == "localsubjectaccessreviews":
            ns = (spec.get("resourceAttributes") or {}).get("namespace") or ""
            if ns and ns != a.namespace:
                raise errors.bad_request(
                    f"spec.resourceAttributes.namespace must match namespace: {ns} != {a.namespace}"
                )
            attrs = Attributes(**{**attrs.__dict__, "namespace": a.namespace})
        d = await sec.authorize(attrs)
        status: dict[str, Any] = {"allowed": d.allowed}
        if d.reason and d.allowed:
            status["reason"] = d.reason
        body["status"] = status
        return _resp(body)
    if group == "authorization.k8s.io" and res == "selfsubjectrulesreviews":
        body = await _body(request, "SelfSubjectRulesReview", av)
        ns = _str(body["spec"], "namespace")
        sec._refresh_rbac()
        rules = sec.rbac.rules_for(user, ns)
        resource_rules, non_resource = [], []
        for r in rules:
            if r.get("nonResourceURLs"):
                non_resource.append({"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]})
            else:
                rr = {k: r.get(k) or [] for k in ("verbs", "apiGroups", "resources")}
                if r.get("resourceNames"):
                    rr["resourceNames"] = r["resourceNames"]
                resource_rules.append(rr)
        body["status"] = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource,
            "incomplete": False,
        }
        return _resp(body)
    if group == "authentication.k8s.io" and res == "selfsubjectreviews":
        body = await _body(request, "SelfSubjectReview", av)
        body["status"] = {"userInfo": _user_info(user)}
        return _resp(body)
    if group == "authentication.k8s.io" and res == "tokenreviews":
        body = await _body(request, "TokenReview", av)
        token = _str(body["spec"], "token")
        try:
            who = await sec.authn.authenticate(f"Bearer {token}", None) if token else None
        except Unauthorized as e:
            body["status"] = {"authenticated": False, "error": str(e)}
            return _resp(body)
        body["status"] = (
            {"authenticated": True, "user": _user_info(who), "audiences": list(sec.authn.audiences)}
            if who is not None
            else {"authenticated": False, "error": "no token"}
        )
        return _resp(body)
    raise errors.not_found(res, group, "")


def _user_info(u: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": u.name, "groups": list(u.groups)}
    if u.uid:
        out["uid"] = u.uid
    if u.extra:
        out["extra"] = u.extra
    return out


async def token_request(sec: Security, request: web.Request, a: Attributes) -> web.Response:
    assert sec.server is not None
    if request.method != "POST":
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")
    if sec.signer is None:
        raise errors.service_unavailable("this API server has no service account signing key")
    reg = sec.server.registry
    body = await _body(request, "TokenRequest", "authentication.k8s.io/v1")
    spec = body["spec"]
    sa = await reg.get(resource("serviceaccounts"), a.namespace, a.name)
    exp = spec.get("expirationSeconds", 3600)
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise errors.bad_request("spec.expirationSeconds must be an integer")
    if exp < 600:
        raise errors.invalid(
            "TokenRequest",
            "authentication.k8s.io",
            a.name,
            [
                {
                    "field": "spec.expirationSeconds",
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {exp}: may not specify a duration less than 10 minutes",
                }
            ],
        )
    exp = min(exp, 2**32)
    auds = spec.get("audiences") or []
    if not isinstance(auds, list) or not all(isinstance(x, str) for x in auds):
        raise errors.bad_request("spec.audiences must be a list of strings")
    ref = spec.get("boundObjectRef")
    pod: tuple[str, str] | None = None
    node = node_name(Attributes(request["user"], "create"))
    if ref is not None:
        if not isinstance(ref, dict) or ref.get("kind") not in ("Pod", "Secret"):
            raise errors.bad_request("spec.boundObjectRef.kind must be Pod or Secret")
        kind = ref["kind"]
        try:
            obj = await reg.get(
                resource("pods" if kind == "Pod" else "secrets"), a.namespace, _str(ref, "name")
            )
        except ApiError as e:
            if e.code == 404:
                raise errors.not_found(
                    "pods" if kind == "Pod" else "secrets", "", _str(ref, "name")
                ) from None
            raise
        uid = obj["metadata"].get("uid", "")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(
                "pods",
                "",
                _str(ref, "name"),
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record ({uid})",
            )
        if kind == "Pod":
            pspec = obj.get("spec") or {}
            if (pspec.get("serviceAccountName") or "default") != a.name:
                raise errors.bad_request(
                    f'cannot bind token for serviceaccount "{a.name}" to pod running with different serviceaccount name'
                )
            if node is not None and pspec.get("nodeName") != node:
                raise errors.forbidden(
                    "serviceaccounts",
                    "",
                    a.name,
                    f'node "{node}" can only get token for pods bound to itself',
                )
            pod = (obj["metadata"]["name"], uid)
    elif node is not None:
        raise errors.forbidden(
            "serviceaccounts", "", a.name, f'node "{node}" can only request tokens bound to pods'
        )
    token, expiry = sec.signer.service_account_token(
        a.namespace,
        a.name,
        sa["metadata"].get("uid", ""),
        audiences=auds or None,
        expiration_seconds=exp,
        pod=pod,
    )
    body["metadata"].update(
        name=a.name,
        namespace=a.namespace,
        creationTimestamp=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    body["spec"] = {**spec, "expirationSeconds": exp, "audiences": auds or list(sec.authn.audiences)}
    body["status"] = {
        "token": token,
        "expirationTimestamp": dt.datetime.fromtimestamp(expiry, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return _resp(body)
