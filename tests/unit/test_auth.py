"""PKI, authentication and RBAC authorization (python/hyperkube/apiserver/auth)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from cryptography import x509

from hyperkube.apiserver.auth import policy
from hyperkube.apiserver.auth.authn import (
    Authenticator,
    StaticToken,
    TokenSigner,
    Unauthorized,
    load_token_file,
)
from hyperkube.apiserver.auth.pki import PKI, identity_of
from hyperkube.apiserver.auth.rbac import Attributes, RBACAuthorizer, UserInfo, forbidden_message

JANE = UserInfo("jane", ("system:authenticated",))


def test_pki_creates_identities_with_private_keys_0600(tmp_path) -> None:
    PKI(str(tmp_path / "pki")).ensure(advertise_ips=["192.0.2.10"])
    for name in ("ca", "apiserver", "admin", "scheduler", "controller-manager", "proxy", "sa"):
        key = tmp_path / "pki" / f"{name}.key"
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, name
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "admin.crt").read_bytes())
    assert identity_of(cert) == ("admin", ["system:masters"])
    serving = x509.load_pem_x509_certificate((tmp_path / "pki" / "apiserver.crt").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1",
        "10.96.0.1",
        "192.0.2.10",
    }
    # a second start reuses everything
    before = (tmp_path / "pki" / "ca.crt").read_bytes()
    PKI(str(tmp_path / "pki")).ensure(advertise_ips=["192.0.2.10"])
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == before
    kubelet = PKI(str(tmp_path / "pki")).ensure_kubelet("node-1")
    kc = x509.load_pem_x509_certificate(open(kubelet.cert, "rb").read())
    assert identity_of(kc) == ("system:node:node-1", ["system:nodes"])


def _authz() -> RBACAuthorizer:
    a = RBACAuthorizer()
    view_binding = {
        "metadata": {"name": "jane-view", "namespace": "dev"},
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane"}],
    }
    a.set_objects(policy.cluster_roles(), [], policy.cluster_role_bindings(), [view_binding])
    return a


def test_view_in_one_namespace() -> None:
    a = _authz()
    get = Attributes(JANE, "get", namespace="dev", resource="pods", name="web")
    assert a.authorize(get).allowed
    assert a.authorize(
        Attributes(JANE, "list", namespace="dev", resource="deployments", api_group="apps")
    ).allowed
    create = Attributes(JANE, "create", namespace="dev", resource="pods")
    d = a.authorize(create)
    assert not d.allowed
    assert d.reason == 'User "jane" cannot create resource "pods" in API group "" in the namespace "dev"'
    assert not a.authorize(Attributes(JANE, "get", namespace="dev", resource="secrets")).allowed
    assert not a.authorize(Attributes(JANE, "get", namespace="prod", resource="pods")).allowed
    assert not a.authorize(Attributes(JANE, "list", resource="nodes")).allowed
    # discovery and health are open to every authenticated user
    assert a.authorize(Attributes(JANE, "get", resource_request=False, path="/apis/apps/v1")).allowed


def test_aggregation_subresources_and_names() -> None:
    a = _authz()
    # admin aggregates edit which aggregates view: pods/log readable, roles writable for admin
    admin = {
        "metadata": {"name": "b", "namespace": "dev"},
        "roleRef": {"kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "Group", "name": "devs"}],
    }
    role = {
        "metadata": {"name": "one-cm", "namespace": "dev"},
        "rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"]},
            {"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]},
        ],
    }
    rb = {
        "metadata": {"name": "bob", "namespace": "dev"},
        "roleRef": {"kind": "Role", "name": "one-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "bob"}],
    }
    a.set_objects(policy.cluster_roles(), [role], policy.cluster_role_bindings(), [admin, rb])
    dev = UserInfo("ann", ("devs",))
    assert a.authorize(Attributes(dev, "get", namespace="dev", resource="pods", subresource="log")).allowed
    assert a.authorize(
        Attributes(dev, "create", namespace="dev", resource="roles", api_group="rbac.authorization.k8s.io")
    ).allowed
    assert a.authorize(Attributes(dev, "delete", namespace="dev", resource="secrets")).allowed
    bob = UserInfo("system:serviceaccount:dev:bob")
    assert a.authorize(Attributes(bob, "get", namespace="dev", resource="configmaps", name="app")).allowed
    assert not a.authorize(
        Attributes(bob, "get", namespace="dev", resource="configmaps", name="other")
    ).allowed
    assert a.authorize(Attributes(bob, "get", namespace="dev", resource="pods", subresource="status")).allowed
    assert not a.authorize(Attributes(bob, "get", namespace="dev", resource="pods")).allowed


def test_masters_and_messages() -> None:
    a = _authz()
    root = UserInfo("admin", ("system:masters",))
    assert a.authorize(Attributes(root, "delete", resource="nodes", name="n1")).allowed
    assert forbidden_message(Attributes(JANE, "list", resource="nodes")) == (
        'User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
    )
    assert forbidden_message(Attributes(JANE, "get", resource_request=False, path="/metrics")) == (
        'User "jane" cannot get path "/metrics"'
    )
    sched = UserInfo("system:kube-scheduler")
    assert a.authorize(
        Attributes(sched, "create", namespace="x", resource="pods", subresource="binding")
    ).allowed
    assert not a.authorize(Attributes(sched, "create", namespace="x", resource="secrets")).allowed


async def test_service_account_tokens(tmp_path) -> None:
    pki = PKI(str(tmp_path)).ensure()
    signer = TokenSigner(open(pki.sa_key, "rb").read())
    alive = {("serviceaccounts", "dev", "default"): "sa-uid", ("pods", "dev", "web"): "pod-uid"}

    async def lookup(kind: str, ns: str, name: str) -> str | None:
        return alive.get((kind, ns, name))

    authn = Authenticator(signer=signer, lookup=lookup)
    token, exp = signer.service_account_token("dev", "default", "sa-uid", pod=("web", "pod-uid"))
    assert exp > time.time()
    u = await authn.authenticate(f"Bearer {token}", None)
    assert u.name == "system:serviceaccount:dev:default"
    assert "system:serviceaccounts:dev" in u.groups and "system:authenticated" in u.groups
    del alive[("pods", "dev", "web")]
    with pytest.raises(Unauthorized, match="has been deleted"):
        await authn.authenticate(f"Bearer {token}", None)
    # tampered, wrong audience, expired
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {token[:-4]}AAAA", None)
    other, _ = signer.service_account_token("dev", "default", "sa-uid", audiences=["vault"])
    with pytest.raises(Unauthorized, match="audiences"):
        await authn.authenticate(f"Bearer {other}", None)
    old, _ = signer.service_account_token(
        "dev", "default", "sa-uid", now=time.time() - 7200, expiration_seconds=600
    )
    with pytest.raises(Unauthorized, match="expired"):
        await authn.authenticate(f"Bearer {old}", None)
    # a token signed by another key is rejected
    other_pki = PKI(str(tmp_path / "other")).ensure()
    foreign, _ = TokenSigner(open(other_pki.sa_key, "rb").read()).service_account_token(
        "dev", "default", "sa-uid"
    )
    with pytest.raises(Unauthorized):
        await authn.authenticate(f"Bearer {foreign}", None)


async def test_static_and_bootstrap_tokens(tmp_path) -> None:
    f = tmp_path / "tokens.csv"
    f.write_text('s3cret,jane,uid-1,"devs,qa"\n')
    tokens = load_token_file(str(f))
    assert tokens["s3cret"] == StaticToken(UserInfo("jane", ("devs", "qa"), "uid-1"))

    async def bootstrap(token_id: str) -> dict[str, str] | None:
        if token_id == "abcdef":
            return {"token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"}
        return None

    authn = Authenticator(static_tokens=tokens, bootstrap=bootstrap, allow_anonymous=False)
    assert (await authn.authenticate("Bearer s3cret", None)).groups == ("devs", "qa", "system:authenticated")
    u = await authn.authenticate("Bearer abcdef.0123456789abcdef", None)
    assert u.name == "system:bootstrap:abcdef" and "system:bootstrappers" in u.groups
    for bad in ("Bearer nope", "Bearer abcdef.wrongwrongwrongw", "Basic Zm9vOmJhcg==", "Bearer "):
        with pytest.raises(Unauthorized):
            await authn.authenticate(bad, None)
    with pytest.raises(Unauthorized, match="no credentials"):
        await authn.authenticate(None, None)
    assert (await authn.authenticate(None, ("admin", ["system:masters"]))).name == "admin"


def test_node_authorizer_limits_kubelets_to_their_pods() -> None:
    from hyperkube.apiserver.auth.node import NodeAuthorizer

    pods = {
        "n1": [
            {
                "metadata": {"namespace": "dev", "name": "a"},
                "spec": {
                    "nodeName": "n1",
                    "volumes": [{"name": "s", "secret": {"secretName": "a-secret"}}],
                    "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "a-cm"}}]}],
                },
            }
        ],
        "n2": [
            {
                "metadata": {"namespace": "dev", "name": "b"},
                "spec": {"nodeName": "n2", "volumes": [{"name": "s", "secret": {"secretName": "b-secret"}}]},
            }
        ],
    }
    node_authz = NodeAuthorizer(lambda n: pods.get(n, []))
    kubelet = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))

    def decide(**kw: str) -> bool:
        a = Attributes(kubelet, **kw)
        d = node_authz.authorize(a)
        return _authz().authorize(a).allowed if d is None else d.allowed

    assert decide(verb="get", namespace="dev", resource="secrets", name="a-secret")
    assert decide(verb="get", namespace="dev", resource="configmaps", name="a-cm")
    assert not decide(verb="get", namespace="dev", resource="secrets", name="b-secret")
    assert not decide(verb="list", namespace="dev", resource="secrets")
    assert not decide(verb="get", namespace="other", resource="secrets", name="a-secret")
    assert decide(verb="patch", resource="nodes", name="n1", subresource="status")
    assert not decide(verb="patch", resource="nodes", name="n2", subresource="status")
    assert decide(
        verb="update",
        namespace="kube-node-lease",
        resource="leases",
        api_group="coordination.k8s.io",
        name="n1",
    )
    assert not decide(
        verb="update",
        namespace="kube-node-lease",
        resource="leases",
        api_group="coordination.k8s.io",
        name="n2",
    )
    assert decide(verb="list", resource="pods")
