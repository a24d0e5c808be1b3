"""Child process for the kill -9 test: 50 concurrent writers create keys as fast as they can and
print each key once its create is acknowledged (returned), then are killed mid-load."""

from __future__ import annotations

import asyncio
import sys

from hyperkube.storage import open_store


async def main(path: str, sync: str) -> None:
    store = open_store(f"sqlite://{path}?sync={sync}")
    await store.start()
    out = sys.stdout

    async def writer(w: int) -> None:
        i = 0
        while True:
            key = f"/registry/load/w{w:02d}-{i:07d}"
            await store.create(key, key.encode() * 4)
            out.write(key + "\n")
            out.flush()
            i += 1

    await asyncio.gather(*(writer(w) for w in range(50)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
