"""Pod volumes as directories under ``<root>/pods/<uid>/volumes/<name>``, bind-mounted into containers.

Supported: ``emptyDir`` (a directory; ``medium: Memory`` is a directory too - no tmpfs), ``hostPath``
(with the ``type`` checks: Directory, DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice,
BlockDevice), ``configMap`` and ``secret`` (keys or ``items``, ``defaultMode``/``mode``, ``optional``),
``downwardAPI`` (fieldRef and resourceFieldRef items) and ``projected`` (the same sources plus
``serviceAccountToken``, whose token is requested from the API server's TokenRequest endpoint when it
has one). Files of configMap/secret/downwardAPI volumes are rewritten when the objects change (on each pod
sync); like upstream, containers see updates through the directory, not through subPath mounts.

A missing configMap/secret (not optional) is a :class:`~hyperkube.kubelet.pods.ConfigError`; the pod
stays ``ContainerCreating`` and the kubelet retries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hyperkube.kubelet.pods import ConfigError, data_bytes, field_value, resource_value
from hyperkube.kubelet.runtime.base import Mount

Fetch = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]  # (kind, name) -> object
TokenFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Awaitable[str]]


def _write_files(d: str, files: dict[str, tuple[bytes, int]]) -> None:
    """Make ``d`` hold exactly ``files`` (relative path -> (content, mode)); unchanged files are kept."""
    os.makedirs(d, exist_ok=True)
    wanted = set()
    for rel, (content, mode) in files.items():
        rel = os.path.normpath(rel).lstrip("/")
        if rel.startswith(".."):
            raise ConfigError(f"volume item path {rel!r} must not contain '..'")
        wanted.add(rel)
        path = os.path.join(d, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "rb") as f:
                same = f.read() == content
        except OSError:
            same = False
        if not same:
            tmp = path + ".hk-tmp"
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        os.chmod(path, mode)
    for dirpath, _dirs, names in os.walk(d, topdown=False):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), d)
            if rel not in wanted:
                os.unlink(os.path.join(dirpath, n))
        if dirpath != d and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _kv_files(
    src: Mapping[str, Any], data: dict[str, bytes], default_mode: int, what: str
) -> dict[str, tuple[bytes, int]]:
    items = src.get("items")
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            if src.get("optional"):
                continue
            raise ConfigError(f"configmap/secret {what}: key {it['key']!r} not found")
        out[it["path"]] = (data[it["key"]], int(it.get("mode", default_mode)))
    return out


class PodVolumes:
    def __init__(self, root: str, fetch: Fetch, token: TokenFn | None = None) -> None:
        self.root = root
        self.fetch = fetch
        self.token = token

    def pod_dir(self, uid: str) -> str:
        return os.path.join(self.root, "pods", uid)

    async def setup(
        self, pod: Mapping[str, Any], node_alloc: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Create/refresh every volume of the pod; returns name -> host path."""
        uid = pod["metadata"]["uid"]
        base = os.path.join(self.pod_dir(uid), "volumes")
        os.makedirs(base, exist_ok=True)
        paths: dict[str, str] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            d = os.path.join(base, name)
            if "hostPath" in vol:
                paths[name] = self._host_path(vol["hostPath"])
                continue
            if "emptyDir" in vol:
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o777)
            elif "configMap" in vol or "secret" in vol:
                _write_files(d, await self._kv(vol, pod))
            elif "downwardAPI" in vol:
                _write_files(d, self._downward(vol["downwardAPI"], pod, node_alloc or {}))
            elif "projected" in vol:
                files: dict[str, tuple[bytes, int]] = {}
                pmode = int(vol["projected"].get("defaultMode", 0o644))
                for src in vol["projected"].get("sources") or []:
                    if "configMap" in src or "secret" in src:
                        files.update(await self._kv(src, pod, pmode))
                    elif "downwardAPI" in src:
                        files.update(self._downward(src["downwardAPI"], pod, node_alloc or {}, pmode))
                    elif "serviceAccountToken" in src:
                        tok = ""
                        if self.token is not None:
                            with contextlib.suppress(Exception):
                                tok = await self.token(pod, src["serviceAccountToken"])
                        files[src["serviceAccountToken"].get("path", "token")] = (tok.encode(), pmode)
                _write_files(d, files)
            else:
                kind = next((k for k in vol if k != "name"), "?")
                raise ConfigError(f"volume {name!r}: volume type {kind!r} is not supported by this kubelet")
            paths[name] = d
        return paths

    def _host_path(self, hp: Mapping[str, Any]) -> str:
        path, typ = hp["path"], hp.get("type") or ""
        exists = os.path.exists(path)
        if typ == "DirectoryOrCreate" and not exists:
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif typ == "FileOrCreate" and not exists:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            with open(path, "a"):
                pass
            os.chmod(path, 0o644)
        checks = {
            "Directory": stat.S_ISDIR,
            "DirectoryOrCreate": stat.S_ISDIR,
            "File": stat.S_ISREG,
            "FileOrCreate": stat.S_ISREG,
            "Socket": stat.S_ISSOCK,
            "CharDevice": stat.S_ISCHR,
            "BlockDevice": stat.S_ISBLK,
        }
        if typ in checks:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise ConfigError(f"hostPath type check failed: {path} is not a {typ}") from None
            if not checks[typ](mode):
                raise ConfigError(f"hostPath type check failed: {path} is not a {typ}")
        elif not exists:
            os.makedirs(path, exist_ok=True)  # "" (unset): upstream creates nothing, but runc needs a source
        return str(path)

    async def _kv(
        self, vol: Mapping[str, Any], pod: Mapping[str, Any], default: int = 0o644
    ) -> dict[str, tuple[bytes, int]]:
        kind = "configmaps" if "configMap" in vol else "secrets"
        src = vol["configMap"] if kind == "configmaps" else vol["secret"]
        name = src.get("name") if kind == "configmaps" else src.get("secretName", src.get("name"))
        obj = await self.fetch(kind, name or "")
        label = "configmap" if kind == "configmaps" else "secret"
        if obj is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'{label} "{name}" not found')
        mode = int(src.get("defaultMode", default))
        return _kv_files(src, data_bytes(kind, obj), mode, f"{pod['metadata'].get('namespace')}/{name}")

    @staticmethod
    def _downward(
        src: Mapping[str, Any], pod: Mapping[str, Any], node_alloc: Mapping[str, str], default: int = 0o644
    ) -> dict[str, tuple[bytes, int]]:
        mode = int(src.get("defaultMode", default))
        out = {}
        containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        for it in src.get("items") or []:
            if "fieldRef" in it:
                val = field_value(pod, it["fieldRef"]["fieldPath"])
            else:
                ref = it["resourceFieldRef"]
                c = containers.get(ref.get("containerName", "")) or next(iter(containers.values()), {})
                val = resource_value(c, ref, node_alloc)
            out[it["path"]] = (val.encode(), int(it.get("mode", mode)))
        return out

    def mounts(self, container: Mapping[str, Any], paths: Mapping[str, str]) -> list[Mount]:
        out = []
        for vm in container.get("volumeMounts") or []:
            src = paths.get(vm["name"])
            if src is None:
                raise ConfigError(
                    f'volumeMount "{vm["name"]}" of container "{container["name"]}" has no volume'
                )
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            out.append(Mount(src, vm["mountPath"], bool(vm.get("readOnly"))))
        return out

    def cleanup(self, uid: str) -> None:
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
