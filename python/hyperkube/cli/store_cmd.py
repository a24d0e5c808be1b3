"""``hyperkube store get|list|watch KEY --storage URL``: read the cluster store, for people.

Like ``etcdctl get /registry/...`` but readable: stored values are msgpack-encoded objects, so
they are decoded and printed as JSON (``-o json`` prints one JSON document per line for
scripts). A SQLite store is opened read-only (the API server may be running and holds the write
lock); its watch then polls the file, since only the writing process is woken at commit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from typing import Any

from hyperkube.storage import Event, KeyValue, StorageError, Store, open_store
from hyperkube.storage.codec import decode
from hyperkube.storage.interface import Corrupt

ENV = "HYPERKUBE_STORAGE"


def _jsonable(o: Any) -> Any:
    if isinstance(o, bytes):
        return {"$base64": base64.b64encode(o).decode()}
    raise TypeError(f"cannot show {type(o).__name__}")


def _value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return decode(raw)
    except Corrupt:
        return {"$undecodable": base64.b64encode(raw).decode()}


def _dump(obj: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(obj, indent=2, default=_jsonable, ensure_ascii=False)
    return json.dumps(obj, separators=(",", ":"), default=_jsonable, ensure_ascii=False)


def _kv_doc(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": kv.key,
        "createRevision": kv.create_revision,
        "modRevision": kv.mod_revision,
        "value": _value(kv.value),
    }


def _print_kv(kv: KeyValue, output: str) -> None:
    if output == "json":
        print(_dump(_kv_doc(kv), pretty=False))
    elif output == "keys":
        print(kv.key)
    else:
        print(f"{kv.key}  (created at revision {kv.create_revision}, modified at {kv.mod_revision})")
        print(_dump(_value(kv.value), pretty=True))


def _print_event(ev: Event, output: str) -> None:
    if output == "json":
        doc = {
            "type": str(ev.type),
            "key": ev.key,
            "revision": ev.revision,
            "value": _value(ev.value),
            "prevValue": _value(ev.prev_value),
        }
        print(_dump(doc, pretty=False), flush=True)
    elif output == "keys":
        print(f"{ev.type} {ev.key} {ev.revision}", flush=True)
    else:
        print(f"{ev.type} {ev.key}  (revision {ev.revision})")
        shown = ev.value if ev.value is not None else ev.prev_value
        print(_dump(_value(shown), pretty=True), flush=True)


def _open(url: str) -> Store:
    if url.startswith("sqlite:") and "readonly=" not in url:
        url += ("&" if "?" in url else "?") + "readonly=1"
    return open_store(url)


async def _run(args: argparse.Namespace) -> int:
    store = _open(args.storage)
    await store.start()
    try:
        if args.action == "get":
            _print_kv(await store.get(args.key, args.revision or None), args.output)
        elif args.action == "list":
            cont: str | None = None
            rev = args.revision or None
            shown = 0
            while True:
                page = await store.list(args.key, limit=500, continue_key=cont, revision=rev)
                rev = page.revision
                for kv in page.items:
                    if args.limit and shown >= args.limit:
                        break
                    _print_kv(kv, args.output)
                    shown += 1
                cont = page.continue_key
                if cont is None or (args.limit and shown >= args.limit):
                    break
            if args.output == "text":
                print(f"# {shown} keys at revision {rev}", file=sys.stderr)
        else:
            start = args.revision if args.revision is not None else await store.current_revision()
            async for ev in store.watch(args.key, start):
                _print_event(ev, args.output)
        return 0
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    if not args.storage:
        print(
            f"error: give --storage URL (or set {ENV}), e.g. sqlite:///var/lib/hyperkube/state.db",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_run(args))
    except (StorageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "store",
        help="read the cluster store (get, list, watch), values decoded to JSON",
        description="Read keys of the cluster store, like etcdctl but with values decoded to JSON. "
        "Keys look like /registry/<resource>/<namespace>/<name>.",
    )
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    specs = {
        "get": ("print one key's value", "the key, e.g. /registry/pods/default/web-0"),
        "list": ("print every key under a prefix, in key order", "the prefix, e.g. /registry/pods/"),
        "watch": ("print changes under a prefix as they happen (Ctrl-C to stop)", "the prefix to watch"),
    }
    for name, (helptext, keyhelp) in specs.items():
        a = acts.add_parser(name, help=helptext, description=helptext)
        a.add_argument("key", metavar="KEY", help=keyhelp)
        a.add_argument(
            "--storage",
            default=os.environ.get(ENV),
            help=f"store URL: sqlite:///abs/path.db or etcd://host:port[,host:port] (default: ${ENV})",
        )
        a.add_argument(
            "-o",
            "--output",
            choices=["text", "json", "keys"],
            default="text",
            help="text: readable; json: one JSON document per line; keys: keys only",
        )
        if name == "watch":
            a.add_argument(
                "--revision",
                type=int,
                default=None,
                help="replay changes after this revision first (default: only new changes)",
            )
        else:
            a.add_argument("--revision", type=int, default=0, help="read at this revision (default: latest)")
        if name == "list":
            a.add_argument("--limit", type=int, default=0, help="print at most this many keys (0: all)")
        a.set_defaults(func=run)
