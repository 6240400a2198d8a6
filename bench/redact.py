"""Cost of redacting every batch the warehouse writes (`pipeline.redact.redact_table`).

    .venv/bin/python bench/redact.py [rows]

Builds a table shaped like `llm_calls`/`items` rows (three ~300-char text columns and a
list of strings), then times `redact_table` on clean rows and on rows where 1 % carry the
API key, against the time `pa.Table.from_pylist` (what `to_arrow` does) takes.
"""

from __future__ import annotations

import os
import sys
import time

import pyarrow as pa

from pipeline.redact import redact_table

KEY = "sk-bench-0123456789abcdefghijklmnop"


def rows(n: int, dirty_every: int | None) -> list[dict]:
    text = "A dog barks twice, then a car passes on a wet street while rain falls. " * 4
    out = []
    for i in range(n):
        dirty = dirty_every is not None and i % dirty_every == 0
        out.append(
            {
                "prompt": f"{i} {text}",
                "raw_output": f'{{"sentence": "{text}", "echo": "{KEY if dirty else "none"}"}}',
                "parsed": text,
                "tags": ["dog", "street", f"tag{i}"],
            }
        )
    return out


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n: int) -> None:
    os.environ["OPENAI_API_KEY"] = KEY
    for label, dirty_every in (("clean", None), ("1% with the key", 100)):
        data = rows(n, dirty_every)
        build = best_of(lambda data=data: pa.Table.from_pylist(data))
        table = pa.Table.from_pylist(data)
        redact = best_of(lambda table=table: redact_table(table))
        mb = table.nbytes / 1e6
        print(
            f"{label:>16}: {n} rows, {mb:.1f} MB; from_pylist {build:.3f} s, "
            f"redact_table {redact:.3f} s ({redact / build:.2f}x of building the batch)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
