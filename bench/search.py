"""Search benchmark: index build time and size, query latency warm and cold.

Builds an archive of ``--records`` records on local disk (the records of ``bench/_records.py``,
their message text replaced by sentences drawn from a Zipf-distributed vocabulary of 20,000 words in
several scripts, with planted phrases such as "guaranteed return" near "crypto"), indexes it
with ``SearchIndex.update`` and runs 20 representative queries:

* index only: the tantivy query of each search, ``--limit`` hits (what grows with the archive);
* end to end: ``Searcher.search`` — the index, the read-back of every hit from the archive, the
  check of each against the query and the access-log entry (a memory store here; S3 adds its
  round trips).

Memory stays bounded by a segment, whatever ``--records`` is: records are generated and sealed
one segment at a time into a store that keeps its objects in files under the temporary directory
(the in-memory store's Object Lock rules, with bytes on disk), scans read those files directly,
and the index is built segment by segment (``SearchIndex.update`` commits as it goes).

"Cold" opens the index afresh (a new process-level handle, no tantivy caches) before each query;
the operating system's page cache stays warm, so a first query after a reboot is slower. A
baseline runs one query as ``ILIKE`` over the same records with DuckDB.

    .venv/bin/python bench/search.py                  # 200,000 records (about a minute)
    .venv/bin/python bench/search.py --records 10000000   # the 10M target (about an hour)
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.fs as pafs
from _records import CHAIN_ID, iter_records

from coexarchive.query.access_log import AccessLog
from coexarchive.query.views import ArchiveCatalog, connect
from coexarchive.records import Record
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer
from coexarchive.search import Searcher, SearchIndex, parse
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore

_SYLLABLES = "ka ri to me lu na so pe vi do ga li mo ze ru ta ne pi fo be".split()  # noqa: SIM905
_NATIVE = (  # noqa: SIM905
    "pedido factura envío réservation confirmação preço заказ доставка مرحبا التوصيل "
    "عنوان नमस्ते रिफंड ऑर्डर 注文 预约 服务 배송 hâlâ gelmedi Termin verschieben"
).split()
_ENGLISH = (  # noqa: SIM905
    "order refund invoice receipt december payment account call back tomorrow please "
    "thanks delivery address change cancel price offer test ok yes no when where "
    "help invest investing investment bitcoin chargeback statement transfer bank "
    "card"
).split()
_PLANTED = (
    "we offer a guaranteed return on crypto",
    "guaranteed return with no risk",
    "crypto is the future, guaranteed",
    "this is only a test of the guaranteed return crypto plan",
    "call me back about the refund",
)


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    words = list(_ENGLISH) + list(_NATIVE)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choices(_SYLLABLES, k=rng.randrange(2, 5)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def texts(seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf
    cumulative: list[float] = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    while True:
        sentence = rng.choices(words, cum_weights=cumulative, k=rng.randrange(4, 24))
        if rng.random() < 0.01:
            sentence.insert(rng.randrange(len(sentence)), rng.choice(_PLANTED))
        yield " ".join(sentence)


def records(count: int, seed: int) -> Iterator[Record]:
    sentences = texts(seed)
    for record in iter_records(count, seed=seed):
        if record.text is not None:
            record = replace(record, text=next(sentences))
        yield record


QUERIES = (
    "crypto",
    '"guaranteed return"',
    "guaranteed NEAR/5 crypto",
    "guaranteed NEAR/5 crypto AND NOT test",
    '"guaranteed return" NEAR/10 crypto',
    "refund OR chargeback",
    "(invoice OR receipt) AND december",
    '"call me back"',
    "direction:outbound guaranteed",
    "kind:message NOT ok",
    "مرحبا",
    "नमस्ते OR रिफंड",
    "注文",
    "envio",  # accent-folded: envío
    "bitcoin -crypto",
    "order AND payment AND tomorrow",
    '"order refund"',
    "kapo OR rika OR tome",
    "invest",  # run with --stem
    "type:text please",
)


class _DiskObjects(MutableMapping[str, bytes]):
    """The objects of a :class:`MemoryStore`, kept in files under ``root`` instead of in memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys_held: set[str] = set()

    def __getitem__(self, key: str) -> bytes:
        if key not in self.keys_held:
            raise KeyError(key)
        return (self.root / key).read_bytes()

    def __setitem__(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.keys_held.add(key)

    def __delitem__(self, key: str) -> None:
        self.keys_held.remove(key)
        (self.root / key).unlink()

    def __contains__(self, key: object) -> bool:
        return key in self.keys_held

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys_held))

    def __len__(self) -> int:
        return len(self.keys_held)


def disk_store(root: Path) -> MemoryStore:
    store = MemoryStore()
    store.unsafe_objects = _DiskObjects(root)  # type: ignore[assignment]
    return store


def build_archive(store: MemoryStore, count: int, seed: int, per_segment: int) -> MemoryStore:
    key = Ed25519Signer.generate("bench.search")
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    writer = ChainWriter(store, CHAIN_ID, signer=key, archive_name="bench", policy=policy)
    batch: list[Record] = []
    for record in records(count, seed):
        batch.append(record)
        if len(batch) == per_segment:
            writer.append(batch)
            batch = []
    if batch:
        writer.append(batch)
    return store


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def directory_size(path: Path) -> int:
    return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--per-segment", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--limit", type=int, default=100, help="hits per query")
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per query")
    parser.add_argument("--tmp", default=None, help="where the archive and index go (a disk)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        objects = Path(tmp) / "archive"
        start = time.perf_counter()
        store = build_archive(disk_store(objects), args.records, args.seed, args.per_segment)
        print(
            f"archive: {args.records:,} records sealed in {time.perf_counter() - start:.1f} s, "
            f"{directory_size(objects) / 1e6:,.0f} MB on disk"
        )
        directory = Path(tmp) / "index"
        index = SearchIndex(directory, "bench")
        local = pafs.SubTreeFileSystem(str(objects), pafs.LocalFileSystem())
        catalog = ArchiveCatalog(store, filesystem=local)
        build = time.perf_counter()
        update = index.update(catalog)
        build = time.perf_counter() - build
        size = directory_size(directory)
        per_million = 1_000_000 / args.records
        print(
            f"index: {update.records:,} searchable records of {args.records:,} in "
            f"{len(update.added)} segments; build {build:.1f} s "
            f"({build * per_million:.0f} s per million records), size {size / 1e6:.1f} MB "
            f"({size * per_million / 1e6:.0f} MB per million records); peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
        )
        trees = [(q, parse(q), q == "invest") for q in QUERIES]

        warm: dict[str, list[float]] = {}
        cold: dict[str, float] = {}
        hits: dict[str, int] = {}
        end_to_end: dict[str, float] = {}
        signer = Ed25519Signer.generate("bench.audit")
        log = AccessLog(store, signer=signer, archive_name="bench")
        ticks = iter(range(10**12, 10**13, 1_000))
        searcher = Searcher(index, catalog, access_log=log, who="bench", clock=lambda: next(ticks))
        for query, tree, stemmed in trees:
            fresh = SearchIndex(directory, "bench")
            cold[query] = timed(partial(fresh.search, tree, stemmed=stemmed, limit=args.limit))
            run = partial(index.search, tree, stemmed=stemmed, limit=args.limit)
            warm[query] = [timed(run) for _ in range(args.repeat)]
            hits[query] = index.search(tree, stemmed=stemmed, limit=1).total
            whole = partial(searcher.search, query, limit=args.limit, stemmed=stemmed)
            end_to_end[query] = min(timed(whole) for _ in range(2))

        print(f"\n{'query':<42} {'matches':>9} {'warm p50':>9} {'cold':>8} {'end to end':>11}")
        for query, _tree, stemmed in trees:
            label = query + (" (--stem)" if stemmed else "")
            print(
                f"{label:<42} {hits[query]:>9,} {statistics.median(warm[query]) * 1e3:>7.1f}ms "
                f"{cold[query] * 1e3:>6.1f}ms {end_to_end[query] * 1e3:>9.1f}ms"
            )
        every_warm = [t for runs in warm.values() for t in runs]
        print(
            f"\nindex only, {args.limit} hits: p95 warm {p95(every_warm) * 1e3:.1f} ms "
            f"(target < 200 ms), p95 cold {p95(list(cold.values())) * 1e3:.1f} ms (target < 1 s)"
        )
        print(
            "end to end (read-back, check, access log): "
            f"p95 {p95(list(end_to_end.values())) * 1e3:.1f} ms"
        )

        catalog.refresh()
        con = connect(catalog)
        ilike = timed(
            lambda: con.execute(
                "SELECT count(*) FROM records WHERE text ILIKE '%guaranteed return%'"
            ).fetchall()
        )
        print(
            "baseline: ILIKE '%guaranteed return%' over the records with DuckDB: "
            f"{ilike * 1e3:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
