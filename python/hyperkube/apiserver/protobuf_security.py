"""Protobuf layouts of the security API types, for :mod:`hyperkube.api.protobuf`.

kubectl sends SelfSubjectAccessReviews (``auth can-i``), SelfSubjectReviews (``auth whoami``),
TokenRequests and CSR approvals as protobuf. The generated schema file does not carry the
``authentication.k8s.io``, ``authorization.k8s.io`` and ``certificates.k8s.io`` packages, so their
(small, stable) message layouts are written here from upstream's generated.proto files and added
to the decoder's table at import.
"""

from __future__ import annotations

from typing import Any

from hyperkube.api import protobuf

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
AZ = "k8s.io.api.authorization.v1"
AN = "k8s.io.api.authentication.v1"
CE = "k8s.io.api.certificates.v1"
S, B, M, BY, I64, I32 = 9, 8, 11, 12, 3, 5


def _f(*fields: tuple[int, str, int, bool, str]) -> dict[str, Any]:
    return {"f": [list(f) for f in fields]}


def _s(num: int, name: str, repeated: bool = False) -> tuple[int, str, int, bool, str]:
    return (num, name, S, repeated, "")


_OBJ = (1, "metadata", M, False, f"{META}.ObjectMeta")

MESSAGES: dict[str, dict[str, Any]] = {
    f"{AZ}.ResourceAttributes": _f(
        _s(1, "namespace"),
        _s(2, "verb"),
        _s(3, "group"),
        _s(4, "version"),
        _s(5, "resource"),
        _s(6, "subresource"),
        _s(7, "name"),
    ),
    f"{AZ}.NonResourceAttributes": _f(_s(1, "path"), _s(2, "verb")),
    f"{AZ}.SelfSubjectAccessReviewSpec": _f(
        (1, "resourceAttributes", M, False, f"{AZ}.ResourceAttributes"),
        (2, "nonResourceAttributes", M, False, f"{AZ}.NonResourceAttributes"),
    ),
    f"{AZ}.SubjectAccessReviewSpec": _f(
        (1, "resourceAttributes", M, False, f"{AZ}.ResourceAttributes"),
        (2, "nonResourceAttributes", M, False, f"{AZ}.NonResourceAttributes"),
        _s(3, "user"),
        _s(4, "groups", True),
        _s(6, "uid"),
    ),
    f"{AZ}.SelfSubjectRulesReviewSpec": _f(_s(1, "namespace")),
    f"{AZ}.SubjectAccessReviewStatus": _f(
        (1, "allowed", B, False, ""), _s(2, "reason"), _s(3, "evaluationError"), (4, "denied", B, False, "")
    ),
    f"{AZ}.ResourceRule": _f(
        _s(1, "verbs", True), _s(2, "apiGroups", True), _s(3, "resources", True), _s(4, "resourceNames", True)
    ),
    f"{AZ}.NonResourceRule": _f(_s(1, "verbs", True), _s(2, "nonResourceURLs", True)),
    f"{AZ}.SubjectRulesReviewStatus": _f(
        (1, "resourceRules", M, True, f"{AZ}.ResourceRule"),
        (2, "nonResourceRules", M, True, f"{AZ}.NonResourceRule"),
        (3, "incomplete", B, False, ""),
        _s(4, "evaluationError"),
    ),
    f"{AZ}.SelfSubjectAccessReview": _f(
        _OBJ,
        (2, "spec", M, False, f"{AZ}.SelfSubjectAccessReviewSpec"),
        (3, "status", M, False, f"{AZ}.SubjectAccessReviewStatus"),
    ),
    f"{AZ}.SubjectAccessReview": _f(
        _OBJ,
        (2, "spec", M, False, f"{AZ}.SubjectAccessReviewSpec"),
        (3, "status", M, False, f"{AZ}.SubjectAccessReviewStatus"),
    ),
    f"{AZ}.LocalSubjectAccessReview": _f(
        _OBJ,
        (2, "spec", M, False, f"{AZ}.SubjectAccessReviewSpec"),
        (3, "status", M, False, f"{AZ}.SubjectAccessReviewStatus"),
    ),
    f"{AZ}.SelfSubjectRulesReview": _f(
        _OBJ,
        (2, "spec", M, False, f"{AZ}.SelfSubjectRulesReviewSpec"),
        (3, "status", M, False, f"{AZ}.SubjectRulesReviewStatus"),
    ),
    f"{AN}.UserInfo": _f(_s(1, "username"), _s(2, "uid"), _s(3, "groups", True)),
    f"{AN}.SelfSubjectReviewStatus": _f((1, "userInfo", M, False, f"{AN}.UserInfo")),
    f"{AN}.SelfSubjectReview": _f(_OBJ, (2, "status", M, False, f"{AN}.SelfSubjectReviewStatus")),
    f"{AN}.TokenReviewStatus": _f(
        (1, "authenticated", B, False, ""),
        (2, "user", M, False, f"{AN}.UserInfo"),
        _s(3, "audiences", True),
        _s(4, "error"),
    ),
    f"{AN}.TokenRequestStatus": _f(_s(1, "token"), (2, "expirationTimestamp", M, False, f"{META}.Time")),
    f"{AN}.TokenReviewSpec": _f(_s(1, "token"), _s(2, "audiences", True)),
    f"{AN}.TokenReview": _f(
        _OBJ,
        (2, "spec", M, False, f"{AN}.TokenReviewSpec"),
        (3, "status", M, False, f"{AN}.TokenReviewStatus"),
    ),
    f"{AN}.BoundObjectReference": _f(_s(1, "kind"), _s(2, "apiVersion"), _s(3, "name"), _s(4, "uid")),
    f"{AN}.TokenRequestSpec": _f(
        _s(1, "audiences", True),
        (3, "boundObjectRef", M, False, f"{AN}.BoundObjectReference"),
        (4, "expirationSeconds", I64, False, ""),
    ),
    f"{AN}.TokenRequest": _f(
        _OBJ,
        (2, "spec", M, False, f"{AN}.TokenRequestSpec"),
        (3, "status", M, False, f"{AN}.TokenRequestStatus"),
    ),
    f"{CE}.CertificateSigningRequestSpec": _f(
        (1, "request", BY, False, ""),
        _s(2, "username"),
        _s(3, "uid"),
        _s(4, "groups", True),
        _s(5, "usages", True),
        _s(7, "signerName"),
        (8, "expirationSeconds", I32, False, ""),
    ),
    f"{CE}.CertificateSigningRequestCondition": _f(
        _s(1, "type"),
        _s(6, "status"),
        _s(2, "reason"),
        _s(3, "message"),
        (4, "lastUpdateTime", M, False, f"{META}.Time"),
        (5, "lastTransitionTime", M, False, f"{META}.Time"),
    ),
    f"{CE}.CertificateSigningRequestStatus": _f(
        (1, "conditions", M, True, f"{CE}.CertificateSigningRequestCondition"),
        (2, "certificate", BY, False, ""),
    ),
    f"{CE}.CertificateSigningRequest": _f(
        _OBJ,
        (2, "spec", M, False, f"{CE}.CertificateSigningRequestSpec"),
        (3, "status", M, False, f"{CE}.CertificateSigningRequestStatus"),
    ),
}


def install() -> None:
    table = protobuf.schema()
    if table:
        for k, v in MESSAGES.items():
            table.setdefault(k, v)
    protobuf.GROUP_PACKAGES.setdefault("authorization.k8s.io", AZ)
    protobuf.GROUP_PACKAGES.setdefault("authentication.k8s.io", AN)
    protobuf.GROUP_PACKAGES.setdefault("certificates.k8s.io", CE)


install()
