"""Label selector matching: one selector against 1,000,000 label sets.

Native paths: `Selector.match_many` over Python dicts (conversion included) and
`Selector.match_table` over a prebuilt `LabelTable` (interned ids, GIL released). Baseline:
the plain-Python reference matcher from tests/reference, in the same run.
"""

from __future__ import annotations

import random

from benchmarks._common import best_of, parser, report
from hyperkube import _native
from tests.reference import selector as ref

SELECTOR = "app=web,tier in (frontend,cache),!canary,env!=dev"


def label_sets(n: int, seed: int = 1) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    apps, tiers, envs = (
        ["web", "db", "api", "batch"],
        ["frontend", "backend", "cache"],
        ["prod", "dev", "stage"],
    )
    out = []
    for i in range(n):
        d = {
            "app": rnd.choice(apps),
            "tier": rnd.choice(tiers),
            "env": rnd.choice(envs),
            "pod-template-hash": f"h{i % 97}",
        }
        if rnd.random() < 0.1:
            d["canary"] = "true"
        out.append(d)
    return out


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n = 100_000 if args.quick else 1_000_000
    sets = label_sets(n)
    sel = _native.Selector(SELECTOR)
    reqs = ref.parse(SELECTOR)

    t_py, expected = best_of(lambda: [ref.matches(reqs, ls) for ls in sets], repeat=1)
    t_many, got = best_of(lambda: sel.match_many(sets))
    assert got.tolist() == expected, "native and reference disagree"
    t_build, table = best_of(lambda: _native.LabelTable(sets), repeat=1)
    t_table, got2 = best_of(lambda: sel.match_table(table))
    assert got2.tolist() == expected

    py_rate = n / t_py
    report(
        f"selector ({n:,} label sets, selector {SELECTOR!r})",
        [
            {"metric": "python reference", "value": py_rate, "unit": "sets/s", "ratio": None},
            {
                "metric": "native match_many (dicts)",
                "value": n / t_many,
                "unit": "sets/s",
                "ratio": t_py / t_many,
                "baseline": "python",
            },
            {
                "metric": "native match_table (prebuilt)",
                "value": n / t_table,
                "unit": "sets/s",
                "ratio": t_py / t_table,
                "baseline": "python",
            },
            {"metric": "LabelTable build (one-off)", "value": n / t_build, "unit": "sets/s", "ratio": None},
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
