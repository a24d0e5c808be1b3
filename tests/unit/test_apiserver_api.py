"""Unit tests of the API object model: patches, defaulting, validation, tables, registry."""

from __future__ import annotations

import pytest

from hyperkube.api import defaults, tables, validation
from hyperkube.api.patch import PatchError, apply_patch, json_patch, merge_patch, strategic_merge_patch
from hyperkube.api.registry import RESOURCES, lookup
from hyperkube.apiserver.allocator import InvalidAddress, IPAllocator, PortAllocator
from hyperkube.apiserver.app import parse_path

POD = {
    "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x/y"]},
    "spec": {
        "containers": [
            {
                "name": "a",
                "image": "i:1",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "X", "value": "1"}],
            },
            {"name": "b", "image": "j:1"},
        ],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "tolerations": [{"key": "k"}],
    },
}


def test_strategic_merge_containers_by_name_and_lists_replaced() -> None:
    out = strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [{"name": "b", "image": "j:2"}, {"name": "c", "image": "k"}],
                "tolerations": [{"key": "z"}],
            }
        },
        "Pod",
    )
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [
        ("a", "i:1"),
        ("b", "j:2"),
        ("c", "k"),
    ]
    assert out["spec"]["tolerations"] == [{"key": "z"}]  # no merge key: replaced
    assert POD["spec"]["containers"][1]["image"] == "j:1"  # input untouched


def test_strategic_merge_directives() -> None:
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, "Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == ["b"]
    out = strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 81}]}
                ]
            }
        },
        "Pod",
    )
    c = out["spec"]["containers"][0]
    assert c["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert [p["containerPort"] for p in c["ports"]] == [80, 81]
    out = strategic_merge_patch(
        POD,
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/y"], "labels": {"a": None, "b": "2"}}},
        "Pod",
    )
    assert out["metadata"]["finalizers"] == [] and out["metadata"]["labels"] == {"b": "2"}
    out = strategic_merge_patch(
        POD, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}, "Pod"
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]
    out = strategic_merge_patch(
        POD,
        {
            "spec": {
                "volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]
            }
        },
        "Pod",
    )
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 443, "name": "https"}]}}, "Service")
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]
    with pytest.raises(PatchError):
        strategic_merge_patch(POD, {"spec": {"containers": [{"image": "no-name"}]}}, "Pod")


def test_json_and_merge_patch() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    assert json_patch(
        doc, [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "replace", "path": "/c", "value": 2}]
    ) == {"a": {"b": [1, 2, 3]}, "c": 2}
    assert json_patch(
        doc, [{"op": "remove", "path": "/a/b/0"}, {"op": "test", "path": "/c", "value": 1}]
    ) == {"a": {"b": [2]}, "c": 1}
    assert json_patch(doc, [{"op": "move", "from": "/c", "path": "/d"}]) == {"a": {"b": [1, 2]}, "d": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/c", "value": 5}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert merge_patch(doc, {"a": {"b": None}, "e": [1]}) == {"a": {}, "c": 1, "e": [1]}
    with pytest.raises(PatchError):
        apply_patch(doc, "merge", [1])


def test_pod_defaults_and_validation_causes() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "x:1.0"}]},
    }
    defaults.apply("", "Pod", pod)
    s = pod["spec"]
    assert (
        s["restartPolicy"] == "Always"
        and s["terminationGracePeriodSeconds"] == 30
        and s["dnsPolicy"] == "ClusterFirst"
    )
    assert [c["imagePullPolicy"] for c in s["containers"]] == ["Always", "IfNotPresent"]
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert validation.validate("", "Pod", True, pod) == []
    bad = {
        "metadata": {"name": "Bad_Name", "namespace": "d", "labels": {"k": "bad value"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [{"containerPort": 70000, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "1x"}},
                }
            ],
            "restartPolicy": "Sometimes",
            "dnsPolicy": "ClusterFirst",
        },
    }
    fields = {c["field"] for c in validation.validate("", "Pod", True, bad)}
    assert {
        "metadata.name",
        "metadata.labels.k",
        "spec.containers[0].image",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].resources.limits[cpu]",
        "spec.restartPolicy",
    } <= fields


def test_deployment_selector_must_match_template() -> None:
    d = {
        "metadata": {"name": "d", "namespace": "n"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    defaults.apply("apps", "Deployment", d)
    causes = validation.validate("apps", "Deployment", True, d)
    assert [c["field"] for c in causes] == ["spec.template.metadata.labels"]
    assert "`selector` does not match template `labels`" in causes[0]["message"]


def test_tables() -> None:
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [{"ready": True, "restartCount": 2, "state": {"running": {}}}],
        },
    }
    t = tables.table("pods", [pod], {"resourceVersion": "5"})
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]
    cells = t["rows"][0]["cells"]
    assert cells[:4] == ["p", "1/1", "Running", "2"] and cells[5:7] == ["10.0.0.1", "n1"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    waiting = dict(
        pod,
        status={
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        },
    )
    assert tables.pod_row(waiting)[2] == "ImagePullBackOff"
    term = dict(pod, metadata=dict(pod["metadata"], deletionTimestamp="2020-01-01T00:00:00Z"))
    assert tables.pod_row(term)[2] == "Terminating"
    svc = {
        "metadata": {"name": "s"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.9",
            "ports": [{"port": 80, "nodePort": 30001, "protocol": "TCP"}],
        },
    }
    assert tables.svc_row(svc)[1:5] == ["NodePort", "10.96.0.9", "<none>", "80:30001/TCP"]
    lb = {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9", "ports": []}}
    assert tables.svc_row(lb)[3:5] == ["<pending>", "<none>"]


def test_registry_and_paths() -> None:
    assert lookup("apps", "v1", "deployments").kind == "Deployment"  # type: ignore[union-attr]
    assert {r.plural for r in RESOURCES if "all" in r.categories} == {
        "pods",
        "services",
        "deployments",
        "replicasets",
    }
    info = parse_path("/api/v1/namespaces/default/pods/web/status")
    assert (
        info is not None
        and info.res is not None
        and (info.res.plural, info.namespace, info.name, info.subresource)
        == ("pods", "default", "web", "status")
    )
    info = parse_path("/api/v1/namespaces/default")
    assert (
        info is not None
        and info.res is not None
        and (info.res.plural, info.name) == ("namespaces", "default")
    )
    info = parse_path("/apis/apps/v1/watch/namespaces/x/deployments")
    assert info is not None and info.watch_path and info.namespace == "x"
    assert lookup("", "v1", "pods").key("ns", "p") == "/registry/pods/ns/p"  # type: ignore[union-attr]
    assert lookup("", "v1", "nodes").key(None, "n") == "/registry/nodes/n"  # type: ignore[union-attr]


def test_allocators() -> None:
    ips = IPAllocator("10.96.0.0/12")
    assert ips.allocate() == "10.96.0.1" and ips.allocate() == "10.96.0.2"
    ips.release("10.96.0.1")
    assert ips.allocate("10.96.0.1") == "10.96.0.1"
    with pytest.raises(InvalidAddress):
        ips.allocate("10.96.0.2")
    with pytest.raises(InvalidAddress):
        ips.allocate("192.168.0.1")
    ports = PortAllocator(30000, 30001)
    assert {ports.allocate(), ports.allocate()} == {30000, 30001}
    with pytest.raises(Exception, match="range is full"):
        ports.allocate()


def test_prune_unknown_fields() -> None:
    from hyperkube.apiserver import openapi

    schema = openapi.kind_schema("", "v1", "Pod")
    assert schema is not None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1},
        "spec": {
            "containers": [
                {"name": "c", "image": "i", "imagee": "x", "ports": [{"containerPort": 1, "hostIP2": "x"}]}
            ]
        },
        "extra": True,
    }
    assert openapi.prune_unknown(schema, pod) == [
        "metadata.bogus",
        "spec.containers[0].imagee",
        "spec.containers[0].ports[0].hostIP2",
        "extra",
    ]
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 1}]}]},
    }


def _pb(num: int, payload: bytes | int) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_body_decodes_like_json() -> None:
    from hyperkube.api import protobuf

    labels = _pb(11, _pb(1, b"team") + _pb(2, b"a"))
    meta = (
        _pb(1, b"demo") + _pb(2, b"") + labels + _pb(8, b"")
    )  # empty generateName and zero time are dropped
    ns = _pb(1, meta) + _pb(2, b"") + _pb(3, b"")
    body = protobuf.MAGIC + _pb(1, _pb(1, b"v1") + _pb(2, b"Namespace")) + _pb(2, ns)
    assert protobuf.decode(body) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo", "labels": {"team": "a"}},
        "spec": {},
        "status": {},
    }
    replicas = _pb(1, _pb(1, b"d")) + _pb(2, _pb(1, 0))  # DeploymentSpec.replicas = 0 is kept
    dep = protobuf.MAGIC + _pb(1, _pb(1, b"apps/v1") + _pb(2, b"Deployment")) + _pb(2, replicas)
    assert protobuf.decode(dep)["spec"] == {"replicas": 0}
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(protobuf.MAGIC + _pb(1, _pb(1, b"v1") + _pb(2, b"Namespace")) + _pb(2, _pb(99, b"x")))
