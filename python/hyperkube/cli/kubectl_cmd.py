"""``hyperkube kubectl``: a built-in client for machines without kubectl.

Same syntax and output as kubectl for the everyday verbs: get (``-o wide|yaml|json|name|
jsonpath=...``, ``-w``, ``-l``, ``-A``), describe, apply/create/delete ``-f`` (files, dirs,
``-``), logs (``-f``), scale, rollout status/undo, cordon/uncordon/drain, label, annotate,
config view/use-context/current-context. Tables come from the server (meta.k8s.io Table, as
kubectl asks for them) and are laid out as kubectl's tabwriter does (cells padded by 3,
minimum width 6, last column unpadded), so the output is byte-for-byte kubectl's for the
same objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import yaml

from hyperkube.client import Client, errors, load_kubeconfig
from hyperkube.client.resources import Resource, for_object, resource

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
ALL_CATEGORY = [
    "pods",
    "services",
    "daemonsets",
    "deployments",
    "replicasets",
    "statefulsets",
    "jobs",
    "cronjobs",
]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class UsageError(Exception):
    pass


# --- output -------------------------------------------------------------------------------


def tabulate(rows: list[list[str]]) -> str:
    """kubectl's tabwriter: minwidth 6, padding 3, last cell of a row unpadded."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for j, cell in enumerate(r[:-1]):
            widths[j] = max(widths[j], len(cell) + 3, 6)
    out = []
    for r in rows:
        line = "".join(cell.ljust(widths[j]) for j, cell in enumerate(r[:-1])) + (r[-1] if r else "")
        out.append(line)
    return "\n".join(out) + "\n"


def kind_prefix(res: Resource) -> str:
    kind = res.kind.lower()
    return f"{kind}.{res.group}" if res.group else kind


def cell(v: Any) -> str:
    if v is None:
        return "<none>"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def table_rows(
    table: dict, *, wide: bool, namespace_col: bool, prefix: str | None, header: bool = True
) -> list[list[str]]:
    cols = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(cols) if wide or c.get("priority", 0) == 0]
    rows: list[list[str]] = []
    if header:
        head = [cols[i]["name"].upper() for i in keep]
        rows.append((["NAMESPACE"] if namespace_col else []) + head)
    for row in table.get("rows") or []:
        cells = [cell(row["cells"][i]) for i in keep]
        if prefix and cells:
            cells[0] = f"{prefix}/{cells[0]}"
        if namespace_col:
            ns = ((row.get("object") or {}).get("metadata") or {}).get("namespace", "")
            cells = [ns, *cells]
        rows.append(cells)
    return rows


class _KubectlDumper(yaml.SafeDumper):
    """Go's YAML style: multi-line strings as literal blocks, quoted strings in double quotes."""

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_KubectlDumper.add_representer(str, _str_representer)


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_KubectlDumper, default_flow_style=False, sort_keys=True, allow_unicode=True, width=2**31
    )


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def jsonpath(template: str, obj: Any) -> str:
    """The subset of kubectl's JSONPath people use: {.a.b}, {.items[*].x}, [N], {range}...{end}."""
    out: list[str] = []
    i = 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            expr = template[i + 1 : j].strip()
            if expr.startswith("range "):
                end = template.index("{end}", j)
                body = template[j + 1 : end]
                for item in _jp_eval(expr[6:].strip(), obj):
                    out.append(jsonpath(body, item))
                i = end + 5
                continue
            vals = _jp_eval(expr, obj)
            out.append(" ".join(v if isinstance(v, str) else json.dumps(v) for v in vals))
            i = j + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out).replace("\\n", "\n").replace("\\t", "\t")


def _jp_eval(expr: str, obj: Any) -> list[Any]:
    vals = [obj]
    expr = expr.lstrip("$")
    tokens: list[str] = []
    for part in expr.split("."):
        if not part:
            continue
        while "[" in part:
            head, _, rest = part.partition("[")
            if head:
                tokens.append(head)
            idx, _, part = rest.partition("]")
            tokens.append(f"[{idx}]")
        if part:
            tokens.append(part)
    for t in tokens:
        nxt: list[Any] = []
        for v in vals:
            if t.startswith("["):
                idx = t[1:-1]
                if isinstance(v, list):
                    if idx == "*":
                        nxt.extend(v)
                    else:
                        try:
                            nxt.append(v[int(idx)])
                        except (ValueError, IndexError):
                            pass
            elif isinstance(v, dict) and t in v:
                nxt.append(v[t])
            elif isinstance(v, list) and t != "*":
                nxt.extend(x[t] for x in v if isinstance(x, dict) and t in x)
        vals = nxt
    return vals


# --- helpers ------------------------------------------------------------------------------


def resolve(name: str) -> Resource:
    try:
        return resource(name)
    except KeyError:
        raise UsageError(f'the server doesn\'t have a resource type "{name}"') from None


def load_manifests(paths: list[str]) -> list[dict]:
    docs: list[dict] = []
    for p in paths:
        if p == "-":
            texts = [sys.stdin.read()]
        elif os.path.isdir(p):
            texts = []
            for f in sorted(os.listdir(p)):
                if f.endswith((".yaml", ".yml", ".json")):
                    with open(os.path.join(p, f)) as fh:
                        texts.append(fh.read())
        else:
            try:
                with open(p) as fh:
                    texts = [fh.read()]
            except FileNotFoundError:
                raise UsageError(f'the path "{p}" does not exist') from None
        for t in texts:
            for d in yaml.safe_load_all(t):
                if not d:
                    continue
                if d.get("kind") == "List" or (d.get("kind", "").endswith("List") and "items" in d):
                    docs.extend(d.get("items") or [])
                else:
                    docs.append(d)
    return docs


def resource_of(obj: dict) -> Resource:
    try:
        return for_object(obj)
    except KeyError:
        raise UsageError(
            f'resource mapping not found for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"'
        ) from None


class Kubectl:
    def __init__(self, client: Client, namespace: str, out=sys.stdout, err=sys.stderr) -> None:
        self.c = client
        self.ns = namespace
        self.out = out
        self.err = err

    def ns_for(self, res: Resource, all_namespaces: bool = False) -> str | None:
        if not res.namespaced or all_namespaces:
            return None
        return self.ns

    async def table(self, res: Resource, ns: str | None, name: str | None = None, **params: Any) -> dict:
        q = {k: v for k, v in params.items() if v is not None}
        q["includeObject"] = "Metadata"
        url = self.c.base_url + res.path(ns, name)
        async with self.c.session.get(url, params=q, headers={"Accept": TABLE_ACCEPT}) as r:
            text = await r.text()
            if r.status >= 300:
                raise errors.error_from_status(
                    json.loads(text) if text.startswith("{") else None, r.status, text
                )
            return json.loads(text)

    # -- get --------------------------------------------------------------------------------

    async def get(self, a: argparse.Namespace) -> int:
        if not a.args:
            raise UsageError("You must specify the type of resource to get.")
        types, names = self._types_and_names(a.args)
        fmt = a.output or ""
        multi = len(types) > 1 or a.args[0] == "all"
        printed_any = False
        code = 0
        collected: list[dict] = []
        for res in types:
            ns = self.ns_for(res, a.all_namespaces)
            try:
                if fmt in ("", "wide"):
                    if names:
                        rows: list[list[str]] = []
                        for i, n in enumerate(names):
                            t = await self.table(res, ns, n)
                            rows += table_rows(
                                t, wide=fmt == "wide", namespace_col=False, prefix=None, header=i == 0
                            )
                        self.out.write(tabulate(rows))
                        printed_any = True
                        continue
                    t = await self.table(res, ns, labelSelector=a.selector, fieldSelector=a.field_selector)
                    if not t.get("rows"):
                        continue
                    if printed_any:
                        self.out.write("\n")
                    self.out.write(
                        tabulate(
                            table_rows(
                                t,
                                wide=fmt == "wide",
                                namespace_col=a.all_namespaces and res.namespaced,
                                prefix=kind_prefix(res) if multi else None,
                            )
                        )
                    )
                    printed_any = True
                else:
                    if names:
                        for n in names:
                            collected.append(await self.c.get(res, n, ns))
                    else:
                        lst = await self.c.list(
                            res, ns, label_selector=a.selector, field_selector=a.field_selector
                        )
                        for item in lst.get("items") or []:
                            item.setdefault("apiVersion", res.api_version)
                            item.setdefault("kind", res.kind)
                            collected.append(item)
            except errors.NotFound:
                for n in names:
                    self.err.write(f'Error from server (NotFound): {res.group_resource} "{n}" not found\n')
                code = 1
        if fmt not in ("", "wide"):
            self._print_objects(collected, fmt, single=len(names) == 1 and len(types) == 1)
            printed_any = bool(collected)
        if not printed_any and not names:
            if a.all_namespaces or not types[0].namespaced:
                self.err.write("No resources found\n")
            else:
                self.err.write(f"No resources found in {self.ns} namespace.\n")
        if a.watch:
            await self._watch(types[0], a)
        return code

    def _types_and_names(self, args: list[str]) -> tuple[list[Resource], list[str]]:
        """`pods a b`, `pods,svc`, `all`, or `pod/a pod/b` (one type per call, as kubectl prints)."""
        first, names = args[0], args[1:]
        if "/" in first:
            return [resolve(first.partition("/")[0])], [a.partition("/")[2] for a in args]
        if first == "all":
            return [resolve(t) for t in ALL_CATEGORY], names
        return [resolve(t) for t in first.split(",")], names

    def _print_objects(self, objs: list[dict], fmt: str, single: bool) -> None:
        if fmt == "name":
            for o in objs:
                self.out.write(f"{kind_prefix(resource_of(o))}/{o['metadata']['name']}\n")
            return
        data: Any = objs[0] if single and objs else as_list(objs)
        if fmt == "yaml":
            self.out.write(to_yaml(data))
        elif fmt == "json":
            self.out.write(to_json(data))
        elif fmt.startswith("jsonpath="):
            self.out.write(jsonpath(fmt[len("jsonpath=") :].strip("'"), data))
        else:
            raise UsageError(
                f'unable to match a printer suitable for the output format "{fmt}", allowed formats are: '
                "json,jsonpath,name,wide,yaml"
            )

    async def _watch(self, res: Resource, a: argparse.Namespace) -> None:
        ns = self.ns_for(res, a.all_namespaces)
        lst = await self.c.list(res, ns, label_selector=a.selector, limit=1)
        rv = (lst.get("metadata") or {}).get("resourceVersion")
        async for ev in self.c.watch(
            res, ns, resource_version=rv, label_selector=a.selector, allow_bookmarks=False
        ):
            name = ev.object["metadata"]["name"]
            t = (
                await self.table(
                    res, ev.object["metadata"].get("namespace") if res.namespaced else None, name
                )
                if ev.type != "DELETED"
                else None
            )
            if t is None:
                continue
            rows = table_rows(t, wide=a.output == "wide", namespace_col=False, prefix=None, header=False)
            self.out.write(tabulate(rows))
            self.out.flush()

    # -- apply / create / delete --------------------------------------------------------------

    async def apply(self, a: argparse.Namespace) -> int:
        for doc in load_manifests(a.filename):
            res = resource_of(doc)
            md = doc.setdefault("metadata", {})
            ns = md.get("namespace") or self.ns if res.namespaced else None
            name = md.get("name")
            config = json.dumps(doc, sort_keys=True, separators=(",", ":"))
            md.setdefault("annotations", {})[LAST_APPLIED] = config + "\n"
            try:
                live = await self.c.get(res, name, ns)
            except errors.NotFound:
                await self.c.create(res, doc, ns)
                self.out.write(f"{kind_prefix(res)}/{name} created\n")
                continue
            last = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED, "")
            if last.strip() == config:
                self.out.write(f"{kind_prefix(res)}/{name} unchanged\n")
                continue
            patch = three_way_patch(json.loads(last) if last.strip() else {}, doc)
            await self.c.patch(res, name, patch, ns, patch_type="strategic")
            self.out.write(f"{kind_prefix(res)}/{name} configured\n")
        return 0

    async def create(self, a: argparse.Namespace) -> int:
        if a.kind == "namespace" or a.kind == "ns":
            await self.c.create(
                "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": a.name}}
            )
            self.out.write(f"namespace/{a.name} created\n")
            return 0
        code = 0
        for doc in load_manifests(a.filename or []):
            res = resource_of(doc)
            ns = (doc.get("metadata") or {}).get("namespace") or self.ns if res.namespaced else None
            name = (doc.get("metadata") or {}).get("name")
            try:
                await self.c.create(res, doc, ns)
                self.out.write(f"{kind_prefix(res)}/{name} created\n")
            except errors.AlreadyExists as e:
                self.err.write(f"Error from server (AlreadyExists): {e}\n")
                code = 1
        return code

    async def delete(self, a: argparse.Namespace) -> int:
        targets: list[tuple[Resource, str | None, str]] = []
        if a.filename:
            for doc in load_manifests(a.filename):
                res = resource_of(doc)
                md = doc.get("metadata") or {}
                targets.append((res, md.get("namespace") or self.ns if res.namespaced else None, md["name"]))
        elif a.args:
            types, names = self._types_and_names(a.args)
            if a.selector or a.all:
                for res in types:
                    lst = await self.c.list(res, self.ns_for(res), label_selector=a.selector)
                    targets += [
                        (res, self.ns_for(res), i["metadata"]["name"]) for i in lst.get("items") or []
                    ]
            for res in types[:1]:
                targets += [(res, self.ns_for(res), n) for n in names]
        else:
            raise UsageError("You must provide one or more resources by argument or filename.")
        code = 0
        for res, ns, name in targets:
            try:
                await self.c.delete(
                    res, name, ns, grace_period_seconds=a.grace_period if a.grace_period >= 0 else None
                )
                self.out.write(f'{kind_prefix(res)} "{name}" deleted\n')
            except errors.NotFound:
                self.err.write(f'Error from server (NotFound): {res.group_resource} "{name}" not found\n')
                code = 1
                continue
            if a.wait:
                while True:
                    try:
                        await self.c.get(res, name, ns)
                    except errors.NotFound:
                        break
                    await asyncio.sleep(0.2)
        return code

    # -- other verbs ---------------------------------------------------------------------------

    async def logs(self, a: argparse.Namespace) -> int:
        pod = a.pod.split("/", 1)[-1]
        if a.follow:
            async for chunk in self.c.follow_log(self.ns, pod, container=a.container, tail_lines=a.tail):
                self.out.write(chunk.decode(errors="replace"))
                self.out.flush()
        else:
            text = await self.c.log(
                self.ns, pod, container=a.container, tail_lines=a.tail, previous=a.previous
            )
            self.out.write(text)
        return 0

    async def scale(self, a: argparse.Namespace) -> int:
        types, names = self._types_and_names(a.args)
        for n in names:
            await self.c.scale(types[0], n, a.replicas, self.ns)
            self.out.write(f"{kind_prefix(types[0])}/{n} scaled\n")
        return 0

    async def label_or_annotate(self, a: argparse.Namespace, field: str) -> int:
        res = resolve(a.args[0].split("/")[0])
        if "/" in a.args[0]:
            name, changes = a.args[0].split("/", 1)[1], a.args[1:]
        else:
            name, changes = a.args[1], a.args[2:]
        patch: dict[str, Any] = {}
        for ch in changes:
            if ch.endswith("-") and "=" not in ch:
                patch[ch[:-1]] = None
            else:
                k, _, v = ch.partition("=")
                patch[k] = v
        ns = self.ns_for(res)
        if not a.overwrite:
            live = await self.c.get(res, name, ns)
            current = (live.get("metadata") or {}).get(field) or {}
            for k, v in patch.items():
                if v is not None and k in current and current[k] != v:
                    self.err.write(
                        f"error: '{k}' already has a value ({current[k]}), and --overwrite is false\n"
                    )
                    return 1
        await self.c.patch(res, name, {"metadata": {field: patch}}, ns)
        verb = "labeled" if field == "labels" else "annotated"
        self.out.write(f"{kind_prefix(res)}/{name} {verb}\n")
        return 0

    async def cordon(self, node: str, unschedulable: bool) -> int:
        live = await self.c.get("nodes", node)
        verb = "cordoned" if unschedulable else "uncordoned"
        if bool((live.get("spec") or {}).get("unschedulable")) == unschedulable:
            self.out.write(f"node/{node} already {verb}\n")
            return 0
        await self.c.patch("nodes", node, {"spec": {"unschedulable": unschedulable or None}})
        self.out.write(f"node/{node} {verb}\n")
        return 0

    async def drain(self, a: argparse.Namespace) -> int:
        await self.cordon(a.node, True)
        pods = await self.c.list("pods", None, field_selector=f"spec.nodeName={a.node}")
        for p in pods.get("items") or []:
            md = p["metadata"]
            owners = md.get("ownerReferences") or []
            if any(o.get("kind") == "DaemonSet" for o in owners) and a.ignore_daemonsets:
                continue
            if not owners and not a.force:
                self.err.write(
                    f'error: unable to drain node "{a.node}" due to error: cannot delete Pods that declare no '
                    f"controller (use --force to override): {md['namespace']}/{md['name']}\n"
                )
                return 1
            self.out.write(f"evicting pod {md['namespace']}/{md['name']}\n")
            await self.c.evict(md["namespace"], md["name"])
        self.out.write(f"node/{a.node} drained\n")
        return 0

    async def rollout(self, a: argparse.Namespace) -> int:
        kind, _, name = a.target.partition("/")
        res = resolve(kind)
        if a.action == "status":
            deadline = time.monotonic() + a.timeout
            while time.monotonic() < deadline:
                d = await self.c.get(res, name, self.ns)
                spec, st = d.get("spec") or {}, d.get("status") or {}
                want = spec.get("replicas", 1)
                if st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0):
                    upd, total, avail = (
                        st.get("updatedReplicas", 0),
                        st.get("replicas", 0),
                        st.get("availableReplicas", 0),
                    )
                    if upd < want:
                        msg = f'Waiting for deployment "{name}" rollout to finish: {upd} out of {want} new replicas have been updated...'
                    elif total > upd:
                        msg = f'Waiting for deployment "{name}" rollout to finish: {total - upd} old replicas are pending termination...'
                    elif avail < upd:
                        msg = f'Waiting for deployment "{name}" rollout to finish: {avail} of {upd} updated replicas are available...'
                    else:
                        self.out.write(f'deployment "{name}" successfully rolled out\n')
                        return 0
                else:
                    msg = "Waiting for deployment spec update to be observed..."
                self.out.write(msg + "\n")
                self.out.flush()
                if not a.watch:
                    return 0
                await asyncio.sleep(1)
            self.err.write("error: timed out waiting for the condition\n")
            return 1
        if a.action == "undo":
            d = await self.c.get(res, name, self.ns)
            rss = await self.c.list("replicasets", self.ns)
            uid = d["metadata"]["uid"]
            owned = []
            for rs in rss.get("items") or []:
                if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or []):
                    rev = int(
                        (rs["metadata"].get("annotations") or {}).get(
                            "deployment.kubernetes.io/revision", "0"
                        )
                    )
                    owned.append((rev, rs))
            owned.sort(key=lambda x: x[0])
            current = int(
                (d["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0")
            )
            candidates = [
                (r, rs) for r, rs in owned if r != current and (not a.to_revision or r == a.to_revision)
            ]
            if not candidates:
                self.err.write(f'error: no rollout history found for deployment "{name}"\n')
                return 1
            _, rs = candidates[-1]
            template = json.loads(json.dumps(rs["spec"]["template"]))
            template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
            await self.c.patch(
                res,
                name,
                [{"op": "replace", "path": "/spec/template", "value": template}],
                self.ns,
                patch_type="json",
            )
            self.out.write(f"deployment.apps/{name} rolled back\n")
            return 0
        if a.action in ("pause", "resume"):
            await self.c.patch(res, name, {"spec": {"paused": a.action == "pause" or None}}, self.ns)
            self.out.write(f"deployment.apps/{name} {'paused' if a.action == 'pause' else 'resumed'}\n")
            return 0
        raise UsageError(f"unknown rollout action {a.action!r}")

    async def describe(self, a: argparse.Namespace) -> int:
        types, names = self._types_and_names(a.args)
        res = types[0]
        ns = self.ns_for(res)
        objs = (
            [await self.c.get(res, n, ns) for n in names]
            if names
            else (await self.c.list(res, ns)).get("items") or []
        )
        for i, o in enumerate(objs):
            if i:
                self.out.write("\n\n")
            self.out.write(describe_object(res, o))
            evs = await self.c.list(
                "events",
                o["metadata"].get("namespace"),
                field_selector=f"involvedObject.name={o['metadata']['name']}",
            )
            items = evs.get("items") or []
            if items:
                rows = [
                    ["Type", "Reason", "Age", "From", "Message"],
                    ["----", "------", "----", "----", "-------"],
                ]
                for e in items:
                    rows.append(
                        [
                            e.get("type", ""),
                            e.get("reason", ""),
                            "",
                            (e.get("source") or {}).get("component", ""),
                            e.get("message", ""),
                        ]
                    )
                self.out.write(
                    "Events:\n" + "".join("  " + line + "\n" for line in tabulate(rows).splitlines())
                )
            else:
                self.out.write("Events:            <none>\n")
        return 0


def describe_object(res: Resource, o: dict) -> str:
    md = o.get("metadata") or {}
    lines = [f"Name:         {md.get('name', '')}"]
    if res.namespaced:
        lines.append(f"Namespace:    {md.get('namespace', '')}")
    for title, key in (("Labels", "labels"), ("Annotations", "annotations")):
        items = sorted((md.get(key) or {}).items())
        if key == "annotations":
            items = [(k, v) for k, v in items if k != LAST_APPLIED]
        if not items:
            lines.append(f"{title + ':':<14}<none>")
        else:
            for i, (k, v) in enumerate(items):
                lines.append(f"{(title + ':') if i == 0 else '':<14}{k}={v}")
    lines.append(f"CreationTimestamp:  {md.get('creationTimestamp', '')}")
    body = {k: v for k, v in o.items() if k not in ("metadata", "apiVersion", "kind")}
    for line in to_yaml(body).splitlines():
        lines.append(line)
    return "\n".join(lines) + "\n"


def three_way_patch(last: dict, new: dict) -> dict:
    """kubectl apply's patch: the new config, with fields removed since the last applied one set
    to null (a strategic merge patch; lists merge by their keys on the server)."""
    patch = json.loads(json.dumps(new))

    def walk(old: Any, cur: Any, out: dict) -> None:
        if not isinstance(old, dict) or not isinstance(cur, dict):
            return
        for k, v in old.items():
            if k not in cur:
                out[k] = None
            elif isinstance(v, dict) and isinstance(cur[k], dict):
                walk(v, cur[k], out[k])

    walk(last, new, patch)
    return patch


# --- config -----------------------------------------------------------------------------


def config_cmd(a: argparse.Namespace, path: str) -> int:
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    if a.config_action == "view":
        view = json.loads(json.dumps(doc))
        if not a.raw:
            for u in view.get("users") or []:
                for k in ("client-key-data", "token", "client-certificate-data"):
                    if (u.get("user") or {}).get(k):
                        u["user"][k] = "DATA+OMITTED" if k == "client-certificate-data" else "REDACTED"
            for c in view.get("clusters") or []:
                if (c.get("cluster") or {}).get("certificate-authority-data"):
                    c["cluster"]["certificate-authority-data"] = "DATA+OMITTED"
        print(to_yaml(view), end="")
        return 0
    if a.config_action == "current-context":
        print(doc.get("current-context", ""))
        return 0
    if a.config_action == "use-context":
        names = [c.get("name") for c in doc.get("contexts") or []]
        if a.name not in names:
            print(f'error: no context exists with the name: "{a.name}"', file=sys.stderr)
            return 1
        doc["current-context"] = a.name
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, default_flow_style=False)
        print(f'Switched to context "{a.name}".')
        return 0
    if a.config_action == "get-contexts":
        cur = doc.get("current-context")
        rows = [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
        for c in doc.get("contexts") or []:
            ctx = c.get("context") or {}
            rows.append(
                [
                    "*" if c.get("name") == cur else "",
                    c.get("name", ""),
                    ctx.get("cluster", ""),
                    ctx.get("user", ""),
                    ctx.get("namespace", ""),
                ]
            )
        print(tabulate(rows), end="")
        return 0
    raise UsageError(f"unknown config command {a.config_action!r}")


# --- argument parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperkube kubectl", description="kubectl's everyday verbs, built in")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--context", default=None)
    p.add_argument("-n", "--namespace", default=None)
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    g = sub.add_parser("get")
    g.add_argument("args", nargs="*")
    g.add_argument("-o", "--output")
    g.add_argument("-l", "--selector")
    g.add_argument("--field-selector")
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("-w", "--watch", action="store_true")

    d = sub.add_parser("describe")
    d.add_argument("args", nargs="+")

    for verb in ("apply", "create"):
        x = sub.add_parser(verb)
        x.add_argument("-f", "--filename", action="append", required=verb == "apply")
        if verb == "create":
            x.add_argument("kind", nargs="?")
            x.add_argument("name", nargs="?")

    de = sub.add_parser("delete")
    de.add_argument("args", nargs="*")
    de.add_argument("-f", "--filename", action="append")
    de.add_argument("-l", "--selector")
    de.add_argument("--all", action="store_true")
    de.add_argument("--grace-period", type=int, default=-1)
    de.add_argument("--wait", default=True, type=lambda s: s.lower() != "false", nargs="?", const=True)

    lg = sub.add_parser("logs")
    lg.add_argument("pod")
    lg.add_argument("-c", "--container")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--tail", type=int, default=None)
    lg.add_argument("-p", "--previous", action="store_true")

    sc = sub.add_parser("scale")
    sc.add_argument("args", nargs="+")
    sc.add_argument("--replicas", type=int, required=True)

    for verb in ("label", "annotate"):
        x = sub.add_parser(verb)
        x.add_argument("args", nargs="+")
        x.add_argument("--overwrite", action="store_true")

    for verb in ("cordon", "uncordon"):
        x = sub.add_parser(verb)
        x.add_argument("node")
    dr = sub.add_parser("drain")
    dr.add_argument("node")
    dr.add_argument("--ignore-daemonsets", action="store_true")
    dr.add_argument("--force", action="store_true")
    dr.add_argument("--delete-emptydir-data", action="store_true")

    ro = sub.add_parser("rollout")
    ro.add_argument("action", choices=["status", "undo", "pause", "resume"])
    ro.add_argument("target")
    ro.add_argument("--to-revision", type=int, default=0)
    ro.add_argument("-w", "--watch", default=True, type=lambda s: s.lower() != "false", nargs="?", const=True)
    ro.add_argument("--timeout", type=float, default=600)

    cf = sub.add_parser("config")
    cf.add_argument("config_action", choices=["view", "use-context", "current-context", "get-contexts"])
    cf.add_argument("name", nargs="?")
    cf.add_argument("--raw", action="store_true")
    return p


def kubeconfig_path(a: argparse.Namespace) -> str:
    return (
        a.kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or os.path.expanduser("~/.kube/config")
    )


GLOBAL_FLAGS = {
    "--kubeconfig": "kubeconfig",
    "--context": "context",
    "-n": "namespace",
    "--namespace": "namespace",
}


def split_globals(argv: list[str]) -> tuple[list[str], list[str]]:
    """kubectl accepts its global flags anywhere: move them in front of the verb."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in GLOBAL_FLAGS and eq:
            front += [flag, value]
        elif arg in GLOBAL_FLAGS and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 1
        elif arg.startswith("-n") and len(arg) > 2 and not arg.startswith("--"):
            front += ["-n", arg[2:]]
        else:
            rest.append(arg)
        i += 1
    return front, rest


async def run_async(argv: Iterable[str]) -> int:
    p = build_parser()
    front, rest = split_globals(list(argv))
    a = p.parse_args(front + rest)
    if not a.verb:
        p.print_help()
        return 2
    path = kubeconfig_path(a)
    if a.verb == "config":
        return config_cmd(a, path)
    cfg = load_kubeconfig(path, a.context)
    client = Client.from_kubeconfig(path, a.context, user_agent="hyperkube-kubectl")
    k = Kubectl(client, a.namespace or cfg.namespace)
    try:
        if a.verb == "get":
            return await k.get(a)
        if a.verb == "describe":
            return await k.describe(a)
        if a.verb == "apply":
            return await k.apply(a)
        if a.verb == "create":
            return await k.create(a)
        if a.verb == "delete":
            return await k.delete(a)
        if a.verb == "logs":
            return await k.logs(a)
        if a.verb == "scale":
            return await k.scale(a)
        if a.verb in ("label", "annotate"):
            return await k.label_or_annotate(a, "labels" if a.verb == "label" else "annotations")
        if a.verb in ("cordon", "uncordon"):
            return await k.cordon(a.node, a.verb == "cordon")
        if a.verb == "drain":
            return await k.drain(a)
        if a.verb == "rollout":
            return await k.rollout(a)
        raise UsageError(f"unknown verb {a.verb}")
    except errors.ApiError as e:
        print(f"Error from server ({e.reason or type(e).__name__}): {e.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_async(args.kubectl_args))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kubectl",
        help="a built-in kubectl (get, describe, apply, delete, logs, scale, rollout ...)",
        add_help=False,
    )
    p.add_argument("kubectl_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)
