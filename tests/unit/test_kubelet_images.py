"""The node image store: references, OCI and docker-save archives, layer whiteouts, the busybox builder."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from hyperkube.kubelet.images import (
    ImageError,
    ImageNotFound,
    ImageStore,
    apply_layer,
    build_busybox_image,
    normalize_ref,
    short_ref,
)


@pytest.mark.parametrize(
    "ref,want",
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("me/app:v2", "docker.io/me/app:v2"),
        ("quay.io/x/y:v1", "quay.io/x/y:v1"),
        ("localhost:5000/a", "localhost:5000/a:latest"),
        ("localhost/a", "localhost/a:latest"),
        ("r.io/a@sha256:" + "a" * 64, "r.io/a@sha256:" + "a" * 64),
    ],
)
def test_normalize_ref(ref: str, want: str) -> None:
    assert normalize_ref(ref) == want


@pytest.mark.parametrize("bad", ["", "a b", "UPPER/case", "/abs", "a//b"])
def test_normalize_ref_rejects(bad: str) -> None:
    with pytest.raises(ImageError):
        normalize_ref(bad)


def test_short_ref() -> None:
    assert short_ref("docker.io/library/busybox:latest") == "busybox:latest"
    assert short_ref("docker.io/me/app:v2") == "me/app:v2"
    assert short_ref("quay.io/x/y:v1") == "quay.io/x/y:v1"


def _tar(entries: list[tuple]) -> bytes:
    """entries: (name, kind, data_or_link, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, payload, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 1000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "file":
                ti.size = len(payload)
                tf.addfile(ti, io.BytesIO(payload))
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
                tf.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
                tf.addfile(ti)
    return buf.getvalue()


LOWER = [
    ("etc", "dir", None, 0o755),
    ("etc/keep", "file", b"keep", 0o644),
    ("etc/gone", "file", b"gone", 0o644),
    ("usr", "dir", None, 0o755),
    ("usr/lib", "dir", None, 0o755),
    ("lib", "sym", "/usr/lib", 0o777),  # absolute symlink: must resolve inside the rootfs
    ("opq", "dir", None, 0o755),
    ("opq/old1", "file", b"1", 0o644),
    ("opq/sub", "dir", None, 0o755),
    ("opq/sub/old2", "file", b"2", 0o644),
    ("bin", "dir", None, 0o755),
    ("bin/tool", "file", b"#!/bin/sh\n", 0o755),
    ("bin/alias", "hard", "bin/tool", 0o755),
]
UPPER = [
    # the layer's own entry comes BEFORE the opaque marker: it must survive the marker
    ("opq/new", "file", b"new", 0o600),
    ("opq/.wh..wh..opq", "file", b"", 0o644),
    ("etc/.wh.gone", "file", b"", 0o644),
    ("lib/libx.so", "file", b"ELF", 0o644),  # written through the absolute symlink
    ("etc/keep", "file", b"changed", 0o644),
]


def test_apply_layer_whiteouts_and_symlinks(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for layer in (_tar(LOWER), gzip.compress(_tar(UPPER))):
        with io.BytesIO(layer) as f:
            apply_layer(str(root), f)
    assert (root / "etc/keep").read_bytes() == b"changed"
    assert not (root / "etc/gone").exists()
    assert not (root / "etc/.wh.gone").exists()
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert (root / "opq/new").stat().st_mode & 0o777 == 0o600
    assert (root / "usr/lib/libx.so").read_bytes() == b"ELF"
    assert os.readlink(root / "lib") == "/usr/lib"
    assert (root / "bin/alias").stat().st_ino == (root / "bin/tool").stat().st_ino
    assert (root / "bin/tool").stat().st_mtime == 1000
    # nothing escaped the root through the absolute symlink
    assert not os.path.exists("/usr/lib/libx.so") or open("/usr/lib/libx.so", "rb").read() != b"ELF"


def test_apply_layer_rejects_hardlink_to_missing(tmp_path) -> None:
    with (
        io.BytesIO(_tar([("x", "hard", "nope", 0o644)])) as f,
        pytest.raises(ImageError, match="target missing"),
    ):
        apply_layer(str(tmp_path), f)


def _docker_save(path, layers: list[bytes], tags: list[str], config_extra: dict | None = None) -> str:
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/tool"], "Env": ["A=1"], "WorkingDir": "/etc", "User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
        **(config_extra or {}),
    }
    cfg_b = json.dumps(cfg).encode()
    cfg_hex = hashlib.sha256(cfg_b).hexdigest()
    with tarfile.open(path, "w") as tf:

        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        names = []
        for i, layer in enumerate(layers):
            add(f"l{i}/layer.tar", layer)
            names.append(f"l{i}/layer.tar")
        add(f"{cfg_hex}.json", cfg_b)
        add(
            "manifest.json",
            json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": tags, "Layers": names}]).encode(),
        )
    return "sha256:" + cfg_hex


def test_import_docker_save_two_layers(tmp_path) -> None:
    archive = tmp_path / "img.tar"
    image_id = _docker_save(
        archive, [_tar(LOWER), gzip.compress(_tar(UPPER))], ["me/app:v1", "me/app:latest"]
    )
    store = ImageStore(str(tmp_path / "store"))
    [img] = store.import_archive(str(archive))
    assert img.id == image_id
    assert img.names == ["docker.io/me/app:latest", "docker.io/me/app:v1"]
    assert (
        img.cmd == ["/bin/tool"] and img.env == ["A=1"] and img.working_dir == "/etc" and img.user == "1000"
    )
    assert sorted(os.listdir(os.path.join(img.rootfs, "opq"))) == ["new"]
    assert not os.path.exists(os.path.join(img.rootfs, "etc/gone"))
    # lookups: short name, full name, id prefix; a second store object sees the import
    other = ImageStore(str(tmp_path / "store"))
    assert other.get("me/app:v1").id == image_id
    assert other.get(image_id.split(":")[1][:12]).id == image_id
    with pytest.raises(ImageNotFound):
        other.get("me/app:v2")
    # untag one name, then remove the image
    store.remove("me/app:latest")
    assert store.get("me/app:v1").names == ["docker.io/me/app:v1"]
    store.remove("me/app:v1")
    assert store.list() == [] and not os.path.exists(img.rootfs)


def test_busybox_image_is_deterministic_and_importable(tmp_path) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    ida = build_busybox_image(str(a))
    idb = build_busybox_image(str(b), name="busybox:latest")
    assert ida == idb and a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        names = set(tf.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert (
        index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    )
    store = ImageStore(str(tmp_path / "store"))
    [img] = store.import_archive(str(a), name="tools/bb:1")
    assert img.id == ida and img.names == ["docker.io/tools/bb:1"] and img.cmd == ["sh"]
    for applet in ("sh", "sleep", "cat", "nc", "httpd", "echo", "hostname", "ps"):
        assert os.readlink(os.path.join(img.rootfs, "bin", applet)) == "busybox"
    assert os.access(os.path.join(img.rootfs, "bin/busybox"), os.X_OK)
    assert os.stat(os.path.join(img.rootfs, "tmp")).st_mode & 0o7777 == 0o1777


def test_import_errors(tmp_path) -> None:
    store = ImageStore(str(tmp_path / "store"))
    with pytest.raises(ImageError, match="no such file"):
        store.import_archive(str(tmp_path / "missing.tar"))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match="not a tar archive"):
        store.import_archive(str(junk))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tf:
        ti = tarfile.TarInfo("hello")
        tf.addfile(ti, io.BytesIO(b""))
    with pytest.raises(ImageError, match="neither an OCI image layout"):
        store.import_archive(str(empty))
    # a blob whose content does not match its digest is refused, and nothing is half-imported
    if os.path.exists("/bin/busybox"):
        good = tmp_path / "bb.tar"
        build_busybox_image(str(good))
        bad = tmp_path / "bad.tar"
        with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
            for m in src.getmembers():
                data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
                if m.isfile() and m.size > 100000:
                    data = data[:-1] + bytes([data[-1] ^ 1])  # type: ignore[index]
                dst.addfile(m, io.BytesIO(data) if data is not None else None)
        with pytest.raises(ImageError, match="does not match its digest"):
            store.import_archive(str(bad))
        assert store.list() == []
        rootfs_dir = os.path.join(store.root, "rootfs")
        assert not os.path.isdir(rootfs_dir) or not os.listdir(rootfs_dir)


def test_image_command(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    from hyperkube.cli.main import main

    d, f = str(tmp_path / "data"), str(tmp_path / "bb.tar")
    assert main(["image", "build-busybox", "--import", "--data-dir", d, f]) == 0
    assert main(["image", "import", "--data-dir", d, "--name", "tools/bb:1", f]) == 0
    capsys.readouterr()
    assert main(["image", "ls", "--data-dir", d]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert sorted(line.split()[0] + ":" + line.split()[1] for line in out[1:]) == [
        "busybox:latest",
        "tools/bb:1",
    ]
    assert main(["image", "import", "--data-dir", d, str(tmp_path / "missing.tar")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["image", "rm", "--data-dir", d, "tools/bb:1"]) == 0
    assert main(["image", "rm", "--data-dir", d, "nope"]) == 1
