"""Node image store: import OCI image-layout and ``docker save`` archives; unpack them into rootfs trees.

Images are never fetched from a registry. An image reaches a node only through
``hyperkube image import FILE`` (or :meth:`ImageStore.import_archive`), which accepts

- an **OCI image-layout** archive: a tar holding ``oci-layout``, ``index.json`` and ``blobs/sha256/*``
  (what ``skopeo copy ... oci-archive:``, ``buildah push ... oci-archive:`` and ``ctr export`` write; nested
  indexes are followed and the manifest for this machine's platform is picked), and
- a **``docker save``** archive: a tar holding ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``);
  both the classic layout (``<id>/layer.tar``) and the OCI-flavoured one of Docker >= 25 are read.

The tar itself may be gzip-compressed; each layer may be a plain or gzip-compressed tar. Every blob named by
digest is checked against its sha256 while it is read.

Layout of the store (one per data dir, shared by the local nodes of that dir)::

    <root>/images.json            {name: {"id": "sha256:<config digest>", ...}}, written atomically
    <root>/configs/<hex>.json     the image config (Env, Cmd, Entrypoint, WorkingDir, User, ...)
    <root>/rootfs/<hex>/          the image's layers applied in order: one flattened, read-only tree
    <root>/lock                   flock held while importing or removing

Layers are applied with our own extractor rather than ``tarfile.extractall``: every path is resolved
inside the rootfs as if chrooted (an absolute symlink such as ``/lib -> /usr/lib`` in a lower layer stays
inside the tree), whiteouts ``.wh.NAME`` delete ``NAME`` from the lower layers and the opaque marker
``.wh..wh..opq`` empties its directory of lower-layer content; both are applied before the layer's own
entries, so their position inside the tar does not matter. Containers get a copy-on-write view of the
flattened tree (an overlay mount, see ``runtime/runc.py``), so the image tree is never modified.

References are normalised as upstream does: ``busybox`` is ``docker.io/library/busybox:latest``.
:func:`build_busybox_image` writes a tiny OCI image-layout archive from the host's static busybox (the
only image source on a machine without a registry); tests and ``hyperkube image build-busybox`` use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(Exception):
    """An archive that cannot be imported, or a reference that is malformed."""


class ImageNotFound(ImageError):
    """The image is not in the store (and images are never pulled)."""


def go_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}.get(
        m, m
    )


# ---------------------------------------------------------------------------------------------------------
# References


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``; digests are kept; a malformed name is an error."""
    ref = ref.strip()
    if not ref or any(c.isspace() for c in ref):
        raise ImageError(f"invalid image reference {ref!r}")
    name, digest = (ref.split("@", 1) + [""])[:2]
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    if not name or name.startswith("/") or name.endswith("/") or "//" in name:
        raise ImageError(f"invalid image reference {ref!r}")
    if name != name.lower():
        raise ImageError(f"invalid image reference {ref!r}: repository name must be lowercase")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + name
        first, _, rest = name.partition("/")
    if first == "docker.io" and "/" not in rest:
        name = f"docker.io/library/{rest}"
    if digest:
        return f"{name}:{tag}@{digest}" if tag else f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


def short_ref(ref: str) -> str:
    """The familiar form: ``docker.io/library/busybox:latest`` -> ``busybox:latest``."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


# ---------------------------------------------------------------------------------------------------------
# Layer extraction (chroot-like path resolution, whiteouts)


def _resolve(root: str, path: str, follow_last: bool = False, _depth: int = 0) -> str:
    """Join ``path`` onto ``root`` resolving symlinks as if ``root`` were ``/``; the result stays inside root."""
    if _depth > 40:
        raise ImageError(f"too many levels of symbolic links resolving {path!r}")
    parts = [p for p in path.split("/") if p and p != "."]
    cur = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "..":
            cur = os.path.dirname(cur) if cur != root else root
            if not cur.startswith(root):
                cur = root
            continue
        nxt = os.path.join(cur, part)
        if (not last or follow_last) and os.path.islink(nxt):
            target = os.readlink(nxt)
            base = root if target.startswith("/") else cur
            rel = os.path.relpath(base, root) if base != root else ""
            cur = _resolve(root, os.path.join("/", rel, target), True, _depth + 1)
            continue
        cur = nxt
    return cur


def _remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _open_layer(fileobj: IO[bytes]) -> tarfile.TarFile:
    head = fileobj.read(2)
    fileobj.seek(0)
    if head == b"\x1f\x8b":
        return tarfile.open(fileobj=gzip.GzipFile(fileobj=fileobj), mode="r|")  # type: ignore[arg-type]
    return tarfile.open(fileobj=fileobj, mode="r|")


def apply_layer(root: str, layer: IO[bytes]) -> int:
    """Apply one layer tar (plain or gzip; seekable file) onto ``root``; return the bytes of content written.

    Whiteouts of the layer are applied first (they refer to lower layers only), then its entries."""
    is_root = os.geteuid() == 0
    # Pass 1: whiteouts.
    with _open_layer(layer) as tf:
        for m in tf:
            base = os.path.basename(m.name.rstrip("/"))
            parent = os.path.dirname(m.name.rstrip("/"))
            if base == OPAQUE:
                d = _resolve(root, parent, follow_last=True)
                if os.path.isdir(d) and not os.path.islink(d):
                    for entry in os.listdir(d):
                        _remove(os.path.join(d, entry))
            elif base.startswith(WHITEOUT):
                _remove(_resolve(root, os.path.join(parent, base[len(WHITEOUT) :])))
    layer.seek(0)
    written = 0
    dir_times: list[tuple[str, float]] = []
    # Pass 2: entries.
    with _open_layer(layer) as tf:
        for m in tf:
            name = m.name.rstrip("/")
            base = os.path.basename(name)
            if not name or name in (".", "/") or base.startswith(WHITEOUT):
                if name in ("", ".", "/") and m.isdir():
                    os.chmod(root, m.mode & 0o7777)
                continue
            parent = _resolve(root, os.path.dirname(name), follow_last=True)
            os.makedirs(parent, exist_ok=True)
            dest = os.path.join(parent, base)
            if base == "..":
                raise ImageError(f"layer entry {m.name!r} escapes the root")
            if os.path.lexists(dest) and not (m.isdir() and os.path.isdir(dest) and not os.path.islink(dest)):
                _remove(dest)
            if m.isdir():
                os.makedirs(dest, exist_ok=True)
                dir_times.append((dest, m.mtime))
            elif m.isreg():
                src = tf.extractfile(m)
                assert src is not None
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                written += m.size
            elif m.issym():
                os.symlink(m.linkname, dest)
            elif m.islnk():
                target = _resolve(root, m.linkname)
                if not os.path.lexists(target):
                    raise ImageError(f"hard link {m.name!r} -> {m.linkname!r}: target missing")
                os.link(target, dest, follow_symlinks=False)
                continue  # a hard link shares mode/owner with its target
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                try:
                    os.mknod(dest, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
                except PermissionError:
                    continue  # device nodes need root; the runtime provides /dev anyway
            else:
                continue
            if is_root:
                with contextlib.suppress(OSError):
                    os.chown(dest, m.uid, m.gid, follow_symlinks=False)
            if not m.issym():
                os.chmod(dest, m.mode & 0o7777)
                if not m.isdir():
                    os.utime(dest, (m.mtime, m.mtime), follow_symlinks=False)
    for d, t in reversed(dir_times):
        with contextlib.suppress(OSError):
            os.utime(d, (t, t))
    return written


# ---------------------------------------------------------------------------------------------------------
# Archives


class _Archive:
    """Random access to the members of an image archive (tar or tar.gz) by name, digest-checked."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        except (tarfile.TarError, OSError):
            raise ImageError(
                f"{path}: not a tar archive (an OCI image layout or `docker save` tar is needed)"
            ) from None
        self.members = {m.name.lstrip("./").lstrip("/"): m for m in self.tar.getmembers()}

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        m = self.members.get(name)
        while m is not None and (m.issym() or m.islnk()):
            name = (
                os.path.normpath(os.path.join(os.path.dirname(name), m.linkname)) if m.issym() else m.linkname
            )
            m = self.members.get(name.lstrip("./"))
        if m is None or not m.isreg():
            raise ImageError(f"{self.path}: archive has no file {name!r}")
        f = self.tar.extractfile(m)
        assert f is not None
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except json.JSONDecodeError as e:
            raise ImageError(f"{self.path}: {name} is not valid JSON ({e})") from None

    @staticmethod
    def blob_name(digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise ImageError(f"unsupported digest {digest!r}")
        return f"blobs/sha256/{hexd}"

    def blob(self, digest: str) -> bytes:
        data = self.read(self.blob_name(digest))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"{self.path}: blob {digest} does not match its digest")
        return data

    def spool(self, name: str, digest: str | None) -> IO[bytes]:
        """Copy a (layer) member to a seekable temp file, checking its digest when given."""
        h = hashlib.sha256()
        tmp = tempfile.TemporaryFile()
        with self.open(name) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                tmp.write(chunk)
        if digest and "sha256:" + h.hexdigest() != digest:
            tmp.close()
            raise ImageError(f"{self.path}: layer {digest} does not match its digest")
        tmp.seek(0)
        return tmp


@dataclass
class _Parsed:
    names: list[str]
    config: bytes
    layers: list[tuple[str, str | None]]  # (member name, digest to check)


def _platform_ok(p: dict[str, Any] | None) -> bool:
    if not p:
        return True
    return p.get("os", "linux") == "linux" and p.get("architecture", go_arch()) == go_arch()


def _parse_oci(ar: _Archive) -> list[_Parsed]:
    index = ar.json("index.json")
    out: list[_Parsed] = []

    def visit(desc: dict[str, Any], names: list[str]) -> None:
        mt = desc.get("mediaType", "")
        body = json.loads(ar.blob(desc["digest"]))
        mt = body.get("mediaType", mt)
        if mt in (OCI_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in body:
            subs = [d for d in body.get("manifests", []) if _platform_ok(d.get("platform"))]
            if not subs:
                raise ImageError(f"{ar.path}: no manifest for linux/{go_arch()}")
            visit(subs[0], names)
            return
        cfg = body["config"]["digest"]
        layers = [(_Archive.blob_name(d["digest"]), d["digest"]) for d in body.get("layers", [])]
        out.append(_Parsed(names, ar.blob(cfg), layers))

    for desc in index.get("manifests", []):
        ann = desc.get("annotations") or {}
        names = []
        if ann.get(CONTAINERD_NAME):
            names.append(ann[CONTAINERD_NAME])
        elif ann.get(REF_NAME):
            rn = ann[REF_NAME]
            # A bare tag ("latest") names no repository; a full reference does.
            if "/" in rn or ("." not in rn and ":" in rn):
                names.append(rn)
        if not _platform_ok(desc.get("platform")):
            continue
        visit(desc, names)
    return out


def _parse_docker(ar: _Archive) -> list[_Parsed]:
    out = []
    for entry in ar.json("manifest.json"):
        cfg_name = entry["Config"]
        cfg = ar.read(cfg_name)
        layers = []
        for ln in entry.get("Layers", []):
            digest = None
            if ln.startswith("blobs/sha256/"):
                digest = "sha256:" + ln.rsplit("/", 1)[1]
            layers.append((ln, digest))
        out.append(_Parsed(list(entry.get("RepoTags") or []), cfg, layers))
    return out


# ---------------------------------------------------------------------------------------------------------
# The store


@dataclass
class Image:
    id: str  # sha256:<config digest>
    names: list[str]
    config: dict[str, Any]  # the full image config JSON
    rootfs: str
    size: int = 0
    created: str = ""

    @property
    def runtime_config(self) -> dict[str, Any]:
        return self.config.get("config") or {}

    @property
    def env(self) -> list[str]:
        return list(self.runtime_config.get("Env") or [f"PATH={DEFAULT_PATH}"])

    @property
    def entrypoint(self) -> list[str]:
        return list(self.runtime_config.get("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self.runtime_config.get("Cmd") or [])

    @property
    def working_dir(self) -> str:
        return self.runtime_config.get("WorkingDir") or "/"

    @property
    def user(self) -> str:
        return self.runtime_config.get("User") or ""


@dataclass
class ImageStore:
    """The images of one data dir. Cheap to construct; reads ``images.json`` on every lookup so that an
    import done by another process (``hyperkube image import``) is seen at once."""

    root: str
    _cache: dict[str, Image] = field(default_factory=dict, repr=False)
    _index_mtime: float = field(default=-1.0, repr=False)
    _index: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = os.path.abspath(self.root)

    # -- index ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, "lock"), "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lf, fcntl.LOCK_UN)

    def _load_index(self) -> dict[str, dict[str, Any]]:
        path = os.path.join(self.root, "images.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            self._index, self._index_mtime = {}, -1.0
            return self._index
        if mtime != self._index_mtime:
            with open(path) as f:
                self._index = json.load(f)
            self._index_mtime = mtime
            self._cache.clear()
        return self._index

    def _save_index(self, index: dict[str, dict[str, Any]]) -> None:
        path = os.path.join(self.root, "images.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(index, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    # -- queries -------------------------------------------------------------------------------------------

    def list(self) -> list[Image]:
        index = self._load_index()
        by_id: dict[str, list[str]] = {}
        for name, rec in index.items():
            by_id.setdefault(rec["id"], []).append(name)
        return [self._image(i, sorted(ns)) for i, ns in sorted(by_id.items())]

    def _image(self, image_id: str, names: list[str]) -> Image:
        hexd = image_id.split(":", 1)[1]
        img = self._cache.get(image_id)
        if img is None:
            with open(os.path.join(self.root, "configs", hexd + ".json"), "rb") as f:
                cfg = json.load(f)
            rec = next((r for r in self._index.values() if r["id"] == image_id), {})
            img = Image(
                image_id,
                names,
                cfg,
                os.path.join(self.root, "rootfs", hexd),
                rec.get("size", 0),
                cfg.get("created", ""),
            )
            self._cache[image_id] = img
        img.names = names
        return img

    def get(self, ref: str) -> Image:
        """Find an image by reference (``busybox``, ``docker.io/library/busybox:latest``) or id (prefix)."""
        index = self._load_index()
        rec = None
        key = ref.removeprefix("sha256:")
        if len(key) >= 12 and all(c in "0123456789abcdef" for c in key):
            ids = {r["id"] for r in index.values() if r["id"].split(":", 1)[1].startswith(key)}
            if len(ids) == 1:
                image_id = ids.pop()
                return self._image(image_id, sorted(n for n, r in index.items() if r["id"] == image_id))
        try:
            name = normalize_ref(ref)
        except ImageError:
            raise ImageNotFound(f"image {ref!r} not found") from None
        rec = index.get(name)
        if rec is None and "@" in name:
            # name@digest matches by manifest/config digest when we have the repository.
            repo, digest = name.split("@", 1)
            for n, r in index.items():
                if n.rsplit(":", 1)[0] == repo.rsplit(":", 1)[0] and digest in (r["id"], r.get("digest")):
                    rec = r
                    break
        if rec is None:
            raise ImageNotFound(f"image {ref!r} not found")
        return self._image(rec["id"], sorted(n for n, r in index.items() if r["id"] == rec["id"]))

    def has(self, ref: str) -> bool:
        try:
            self.get(ref)
            return True
        except ImageNotFound:
            return False

    # -- import / remove -----------------------------------------------------------------------------------

    def import_archive(self, path: str, name: str | None = None) -> list[Image]:
        """Import every image of an archive; ``name`` names (or renames) a single-image archive."""
        ar = _Archive(path)
        try:
            if ar.has("manifest.json"):
                parsed = _parse_docker(ar)
            elif ar.has("index.json"):
                parsed = _parse_oci(ar)
            else:
                raise ImageError(
                    f"{path}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
                )
            if not parsed:
                raise ImageError(f"{path}: the archive holds no image")
            if name:
                if len(parsed) != 1:
                    raise ImageError(f"{path}: --name needs a single-image archive ({len(parsed)} images)")
                parsed[0].names = [name]
            images = []
            with self._locked():
                index = dict(self._load_index())
                for p in parsed:
                    images.append(self._import_one(ar, p, index))
                self._save_index(index)
            return [self.get(i.id) for i in images]
        finally:
            ar.close()

    def _import_one(self, ar: _Archive, p: _Parsed, index: dict[str, dict[str, Any]]) -> Image:
        digest = "sha256:" + hashlib.sha256(p.config).hexdigest()
        hexd = digest.split(":", 1)[1]
        try:
            cfg = json.loads(p.config)
        except json.JSONDecodeError as e:
            raise ImageError(f"{ar.path}: image config is not valid JSON ({e})") from None
        if cfg.get("os", "linux") != "linux":
            raise ImageError(f"{ar.path}: image is for os {cfg.get('os')!r}, not linux")
        names = [normalize_ref(n) for n in p.names] or [f"import-{hexd[:12]}:latest"]
        rootfs = os.path.join(self.root, "rootfs", hexd)
        size = 0
        if not os.path.isdir(rootfs):
            tmp = rootfs + ".partial"
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp, mode=0o755)
            try:
                for member, ldigest in p.layers:
                    with ar.spool(member, ldigest) as f:
                        size += apply_layer(tmp, f)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.rename(tmp, rootfs)
        else:
            size = next((r.get("size", 0) for r in index.values() if r["id"] == digest), 0)
        os.makedirs(os.path.join(self.root, "configs"), exist_ok=True)
        with open(os.path.join(self.root, "configs", hexd + ".json"), "wb") as f:
            f.write(p.config)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for n in names:
            index[n] = {"id": digest, "size": size, "imported": now}
        self._cache.pop(digest, None)
        return Image(digest, names, cfg, rootfs, size, cfg.get("created", ""))

    def remove(self, ref: str) -> Image:
        img = self.get(ref)
        with self._locked():
            index = dict(self._load_index())
            name = None
            with contextlib.suppress(ImageError):
                name = normalize_ref(ref)
            if name in index and len(img.names) > 1:
                del index[name]  # untag only
            else:
                for n in img.names:
                    index.pop(n, None)
                hexd = img.id.split(":", 1)[1]
                shutil.rmtree(img.rootfs, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.root, "configs", hexd + ".json"))
            self._save_index(index)
        return img


# ---------------------------------------------------------------------------------------------------------
# A tiny image from the host's static busybox


BUSYBOX_APPLETS_MIN = (
    "sh ash sleep cat nc httpd echo hostname ps ls wget head tail tr dd true false env id kill mkdir rm "
    "touch grep printf test ip ping date pwd uname mount top seq yes sed awk wc stat readlink ifconfig "
    "free df du timeout nslookup whoami sync"
).split()


def _busybox_applets(busybox: str) -> list[str]:
    import subprocess

    try:
        out = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        applets = sorted({a for a in out.split() if a and "/" not in a and a != "busybox"})
        return applets or list(BUSYBOX_APPLETS_MIN)
    except (OSError, subprocess.SubprocessError):
        return list(BUSYBOX_APPLETS_MIN)


def _tar_add(
    tf: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", link: str = ""
) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = kind, mode, 1, 0, 0, "root", "root"
    ti.linkname = link
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def build_busybox_image(
    path: str, name: str = "busybox:latest", busybox: str = "/bin/busybox", cmd: list[str] | None = None
) -> str:
    """Write an OCI image-layout archive (tar) at ``path`` with one gzip layer: ``/bin/busybox`` (static),
    a symlink per applet in ``/bin``, ``/etc/passwd``/``group``, ``/tmp``; config ``Cmd=["sh"]``.
    Returns the image id (``sha256:<config digest>``). Deterministic for a given busybox binary."""
    with open(busybox, "rb") as f:
        bb = f.read()
    if not bb.startswith(b"\x7fELF"):
        raise ImageError(f"{busybox} is not an ELF binary")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("proc", 0o555),
            ("root", 0o700),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("usr/bin", 0o755),
            ("var", 0o755),
            ("var/www", 0o755),
        ):
            _tar_add(tf, d, tarfile.DIRTYPE, mode)
        _tar_add(tf, "bin/busybox", tarfile.REGTYPE, 0o755, bb)
        for applet in _busybox_applets(busybox):
            _tar_add(tf, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        _tar_add(
            tf,
            "etc/passwd",
            tarfile.REGTYPE,
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        _tar_add(tf, "etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    layer_raw = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(layer_raw)
    layer = gz.getvalue()

    def sha(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    config = json.dumps(
        {
            "architecture": go_arch(),
            "os": "linux",
            "created": "1970-01-01T00:00:01Z",
            "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": cmd or ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [sha(layer_raw)]},
            "history": [{"created": "1970-01-01T00:00:01Z", "created_by": "hyperkube build-busybox"}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha(layer), "size": len(layer)}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    full = normalize_ref(name)
    tag = full.rsplit(":", 1)[1] if "@" not in full else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha(manifest),
                    "size": len(manifest),
                    "annotations": {CONTAINERD_NAME: full, REF_NAME: tag},
                    "platform": {"architecture": go_arch(), "os": "linux"},
                }
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        _tar_add(out, "blobs", tarfile.DIRTYPE, 0o755)
        _tar_add(out, "blobs/sha256", tarfile.DIRTYPE, 0o755)
        for blob in (config, layer, manifest):
            _tar_add(out, "blobs/sha256/" + sha(blob).split(":")[1], tarfile.REGTYPE, 0o644, blob)
        _tar_add(out, "oci-layout", tarfile.REGTYPE, 0o644, b'{"imageLayoutVersion":"1.0.0"}')
        _tar_add(out, "index.json", tarfile.REGTYPE, 0o644, index)
    os.replace(tmp, path)
    return sha(config)
