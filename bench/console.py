"""Console benchmark: page latency with concurrent signed-in users, beside the query layer.

Seals ``--records`` records of ``bench/_records.py`` into an in-memory archive, starts the
console (uvicorn, one worker, on 127.0.0.1) and signs in ``--sessions`` users, each on its own
thread with its own HTTP session. Every user opens the overview, a conversation (a random one of
the 200 busiest customers) and a search, ``--rounds`` times. Printed beside it, in the same run:
the same conversation statement and search run directly through the query layer
(``AuditSession.query`` and ``Searcher.search``, access-log entry included), serially: the floor
the console adds HTTP, sessions, rendering and concurrency to.

    .venv/bin/python bench/console.py                        # 200,000 records, 20 sessions
    .venv/bin/python bench/console.py --records 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyotp
import requests
import uvicorn
from _records import CHAIN_ID, iter_records

from coexarchive._internal.clock import now_ms
from coexarchive.console.accounts import AccountFile
from coexarchive.console.app import create_app
from coexarchive.console.archive import CONVERSATION_SQL, ConsoleArchive
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog, business_segments
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.search import Searcher, SearchIndex
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore

PASSWORD = "bench password of the console"  # noqa: S105 - a bench account
QUERY = "refund OR factura OR доставка"


def build(count: int, per_segment: int) -> tuple[MemoryStore, Ed25519Signer, TrustStore]:
    store = MemoryStore()
    key = Ed25519Signer.generate("bench")
    console_key = Ed25519Signer.generate("bench.console")
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    writer = ChainWriter(store, CHAIN_ID, signer=key, archive_name="bench", policy=policy)
    batch = []
    for record in iter_records(count):
        batch.append(record)
        if len(batch) == per_segment:
            writer.append(batch)
            batch = []
    if batch:
        writer.append(batch)
    trust = TrustStore.parse(key.verifier_key() + "\n" + console_key.verifier_key() + "\n")
    return store, console_key, trust


def busiest(store: MemoryStore, n: int) -> list[str]:
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    table = catalog.dataset(business_segments(catalog)).to_table(columns=["customer_id"])
    counts = Counter(v for v in table.column("customer_id").to_pylist() if v)
    return [customer for customer, _ in counts.most_common(n)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<28} n={len(values):<4} p50 {statistics.median(values) * 1000:7.1f} ms   "
        f"p95 {percentile(values, 0.95) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--per-segment", type=int, default=50_000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()

    started = time.perf_counter()
    store, console_key, trust = build(args.records, args.per_segment)
    customers = busiest(store, 200)
    folder = Path(tempfile.mkdtemp(prefix="coexarchive-console-bench-"))
    index = SearchIndex(folder / "index", "bench")
    index.update(ArchiveCatalog(store))
    print(
        f"archive: {args.records:,} records sealed and indexed in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )

    accounts = AccountFile(folder / "accounts.json")
    users = [f"user{i:02d}" for i in range(args.sessions)]
    for user in users:
        accounts.add(user, PASSWORD, ["reviewer", "auditor"])
    archive = ConsoleArchive(
        store,
        trust=trust,
        signer=console_key,
        archive_name="bench",
        index_dir=folder / "index",
        archive_identity="bench",
        export_dir=folder / "exports",
        clock=now_ms,
    )
    app = create_app(archive, accounts, clock=now_ms)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{args.port}"
    secrets = accounts.load()

    timings: dict[str, list[float]] = {"overview": [], "conversation": [], "search": []}
    lock = threading.Lock()
    failures: list[str] = []

    def session(user: str, seed: int) -> None:
        rng = random.Random(seed)
        http = requests.Session()
        page = http.get(base + "/login", timeout=60)
        token = page.text.split('name="csrf" value="')[1].split('"')[0]
        code = pyotp.TOTP(secrets[user].totp_secret).now()
        # The cookie is Secure; over loopback HTTP requests' jar would not send it back.
        response = http.post(
            base + "/login",
            data={"name": user, "password": PASSWORD, "code": code, "csrf": token},
            cookies={"__Host-coexarchive-login": http.cookies.get("__Host-coexarchive-login")},
            allow_redirects=False,
            timeout=60,
        )
        cookie = response.cookies.get("__Host-coexarchive-session")
        if cookie is None:
            failures.append(f"{user}: sign-in refused")
            return
        jar = {"__Host-coexarchive-session": cookie}
        for _ in range(args.rounds):
            for name, path, params in (
                ("overview", "/", {}),
                (
                    "conversation",
                    "/conversation",
                    {"chain": CHAIN_ID, "customer": rng.choice(customers)},
                ),
                ("search", "/search", {"q": QUERY}),
            ):
                begin = time.perf_counter()
                got = http.get(base + path, params=params, cookies=jar, timeout=120)
                spent = time.perf_counter() - begin
                if got.status_code != 200:
                    failures.append(f"{user} {path}: {got.status_code}")
                with lock:
                    timings[name].append(spent)

    begin = time.perf_counter()
    threads = [threading.Thread(target=session, args=(user, i)) for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    server.should_exit = True

    # The floor: the same statements through the query layer, one at a time.
    direct = AuditSession(store, access_log=archive.access_log, who="bench", trust=trust)
    searcher = Searcher(
        SearchIndex(folder / "index", "bench"),
        ArchiveCatalog(store),
        access_log=archive.access_log,
        who="bench",
        clock=now_ms,
    )
    floor_conv, floor_search = [], []
    rng = random.Random(1)
    for _ in range(30):
        begin_one = time.perf_counter()
        direct.query(CONVERSATION_SQL, {"chain": CHAIN_ID, "customer": rng.choice(customers)})
        floor_conv.append(time.perf_counter() - begin_one)
        begin_one = time.perf_counter()
        searcher.search(QUERY)
        floor_search.append(time.perf_counter() - begin_one)

    pages = sum(len(v) for v in timings.values())
    print(
        f"console: {args.sessions} concurrent sessions, {pages} pages in {wall:.1f} s "
        f"({pages / wall:.1f} pages/s), {len(failures)} failure(s)"
    )
    for name, values in timings.items():
        if values:
            print(line(name, values))
    print("query layer, serial (same statements, access-log entry included):")
    print(line("conversation statement", floor_conv))
    print(line("search", floor_search))
    print(
        "targets (DESIGN §7, issue): conversation p95 < 500 ms, overview < 1 s, search < 1 s "
        "on the 10M-record bench archive"
    )
    for failure in failures[:10]:
        print("  failure:", failure)


if __name__ == "__main__":
    main()
