"""``hyperkube image``: the node image store of a data dir (images are never pulled from a registry).

hyperkube image import [--data-dir DIR] [--name REF] FILE   OCI image-layout or `docker save` tar(.gz)
hyperkube image ls [--data-dir DIR]
hyperkube image rm [--data-dir DIR] REF
hyperkube image build-busybox [--name REF] [--import] [--data-dir DIR] FILE
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_DATA_DIR = ".hyperkube"


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from hyperkube.kubelet.images import ImageStore

    return ImageStore(os.path.join(args.data_dir, "images"))


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"


def cmd_import(args: argparse.Namespace) -> int:
    from hyperkube.kubelet.images import ImageError, short_ref

    try:
        images = _store(args).import_archive(args.file, name=args.name)
    except (ImageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for img in images:
        print(f"imported {', '.join(short_ref(n) for n in img.names)} ({img.id[:19]}, {_human(img.size)})")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from hyperkube.kubelet.images import short_ref

    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for img in _store(args).list():
        for n in img.names:
            repo, _, tag = short_ref(n).rpartition(":")
            rows.append((repo, tag, img.id.split(":", 1)[1][:12], _human(img.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from hyperkube.kubelet.images import ImageError

    try:
        img = _store(args).remove(args.ref)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"deleted {img.id}")
    return 0


def cmd_build_busybox(args: argparse.Namespace) -> int:
    from hyperkube.kubelet.images import ImageError, build_busybox_image

    try:
        image_id = build_busybox_image(args.file, name=args.name, busybox=args.busybox)
    except (ImageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.file} ({args.name}, {image_id[:19]})")
    if args.do_import:
        args.name = None
        return cmd_import(args)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("image", help="manage the node image store (import, ls, rm, build-busybox)")
    isub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state directory (default: .hyperkube)")

    sp = isub.add_parser("import", help="import an OCI image-layout or `docker save` archive")
    common(sp)
    sp.add_argument("--name", default=None, help="name the image (for archives without a name)")
    sp.add_argument("file")
    sp.set_defaults(func=cmd_import)
    sp = isub.add_parser("ls", help="list images")
    common(sp)
    sp.set_defaults(func=cmd_ls)
    sp = isub.add_parser("rm", help="remove an image (or one of its names)")
    common(sp)
    sp.add_argument("ref")
    sp.set_defaults(func=cmd_rm)
    sp = isub.add_parser(
        "build-busybox", help="write a tiny OCI image archive from the host's static busybox"
    )
    common(sp)
    sp.add_argument("--name", default="busybox:latest")
    sp.add_argument("--busybox", default="/bin/busybox")
    sp.add_argument("--import", dest="do_import", action="store_true", help="also import it into the store")
    sp.add_argument("file")
    sp.set_defaults(func=cmd_build_busybox)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
