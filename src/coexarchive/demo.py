"""The ``demo`` command: an embedded S3 server, a week of simulated traffic, ingest and verify."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import Bind, MakeSettings, shell_exports
from coexarchive._internal.clock import now_ms
from coexarchive.commands import ingest_argv, upload_raw
from coexarchive.errors import ConfigError
from coexarchive.settings import Settings
from coexarchive.store.base import ObjectStore

DEMO_PORT = 8350  # S3 port of the demo's server; SeaweedFS uses 8350-8354 and 18350-18354
DEMO_BUCKET = "coexarchive-demo"
DEMO_ARCHIVE = "coexarchive.demo"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps everything: one data directory, one keys folder."""

    data_dir: Path

    @property
    def s3_dir(self) -> Path:
        return self.data_dir / "s3"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def signing_key(self) -> Path:
        return self.keys_dir / "signing.key"

    @property
    def audit_key(self) -> Path:
        return self.keys_dir / "audit.key"

    @property
    def trust(self) -> Path:
        return self.keys_dir / "trust.txt"

    @property
    def data_keys(self) -> Path:
        return self.keys_dir / "data-keys"

    def ensure_keys(self) -> None:
        """The ingest key and the audit key (access log, holds), both in the one trust file."""
        from coexarchive.seal.keys import Ed25519Signer

        self.keys_dir.mkdir(parents=True, exist_ok=True)
        for path, name in ((self.signing_key, DEMO_ARCHIVE), (self.audit_key, "coexarchive.audit")):
            if not path.exists():
                Ed25519Signer.generate(name).to_file(path)
        lines = self.trust.read_text().splitlines() if self.trust.exists() else []
        for path in (self.signing_key, self.audit_key):
            verifier = Ed25519Signer.from_file(path).verifier_key()
            if verifier not in lines:
                lines.append(verifier)
        self.trust.write_text("\n".join(lines) + "\n")

    def environment(self, server: Any, bucket: str, retention: str) -> dict[str, str]:
        """Every variable that points a shell's coexarchive commands at the demo archive."""
        from coexarchive.testing import SimulationConfig

        demo_secret = SimulationConfig().app_secret.decode()  # a public demo value
        return {
            **server.environment(),
            "COEXARCHIVE_BUCKET": bucket,
            "COEXARCHIVE_NAME": DEMO_ARCHIVE,
            "COEXARCHIVE_SIGNING_KEY": str(self.signing_key),
            "COEXARCHIVE_AUDIT_KEY": str(self.audit_key),
            "COEXARCHIVE_TRUST": str(self.trust),
            "COEXARCHIVE_DATA_KEYS": str(self.data_keys),
            "COEXARCHIVE_RETENTION": retention,
            # What the simulation signs with, so that ingest and redrive work here too.
            "COEXARCHIVE_APP_SECRETS": demo_secret,
            "COEXARCHIVE_OUTBOUND_TOKEN": demo_secret,
            "COEXARCHIVE_MEDIA_SECRETS": demo_secret,
        }


def cmd_demo(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    """Embedded S3 → a week of traffic → ingest → verify → what was archived, and where."""
    from coexarchive.store.seaweed import EmbeddedS3, stop_server

    paths = DemoPaths(Path(args.data_dir).resolve())
    bucket = args.bucket or DEMO_BUCKET
    if args.stop:
        if not stop_server(paths.s3_dir):
            print(f"no demo server runs on {paths.s3_dir}")
            return 1
        print(f"stopped the demo's S3 server; its data stays in {paths.s3_dir}")
        return 0
    if args.env:
        running = EmbeddedS3.attach(paths.s3_dir)
        if running is None:
            raise ConfigError(
                f"no demo server runs on {paths.s3_dir}: start one with `coexarchive demo --keep`"
            )
        exports = shell_exports(paths.environment(running, bucket, args.retention))
        print("\n".join([*_path_export(), *exports]))
        return 0
    paths.ensure_keys()
    step = _steps()
    server = EmbeddedS3.attach(paths.s3_dir)
    started = server is None
    if server is None:
        step(
            f"starting the embedded S3 server (SeaweedFS, 127.0.0.1:{args.port}, "
            f"data in {paths.s3_dir})"
        )
        server = EmbeddedS3(paths.s3_dir, s3_port=args.port).start()
    else:
        step(
            f"using the demo's S3 server still running on {server.endpoint_url} (pid {server.pid})"
        )
    try:
        customer = _run_demo(args, paths, server, bucket, step)
    except BaseException:
        if started:  # a demo that failed leaves nothing running behind it
            server.stop()
        raise
    env = paths.environment(server, bucket, args.retention)
    if args.keep or not started:
        if started:
            server.detach()
        _print_next_steps(paths, server, bucket, env, customer)
    else:
        server.stop()
        print(
            f"stopped the demo's S3 server; its data stays in {paths.data_dir}. "
            "Run `coexarchive demo --keep` to leave it running and try reports and exports."
        )
    return 0


def _run_demo(
    args: argparse.Namespace, paths: DemoPaths, server: Any, bucket: str, step: Any
) -> str:
    """Run the flow; the customer with the most messages, for the commands to try next."""

    os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    store = server.store(bucket)
    anchors = DemoAnchors.for_demo(paths)
    try:
        return _run_demo_anchored(args, paths, server, bucket, step, store, anchors)
    finally:
        anchors.stop()


def _run_demo_anchored(
    args: argparse.Namespace,
    paths: DemoPaths,
    server: Any,
    bucket: str,
    step: Any,
    store: Any,
    anchors: DemoAnchors,
) -> str:
    from coexarchive._internal.progress import Progress
    from coexarchive.raw import DeliveryAuth
    from coexarchive.testing import SimulationConfig, simulate
    from coexarchive.verify import verify_archive

    settings = Settings(
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        archive_name=DEMO_ARCHIVE,
        key_file=paths.signing_key,
        audit_key_file=paths.audit_key,
        trust_file=paths.trust,
        retention=args.retention,
        tsa_file=anchors.tsa_file,
        witness_file=anchors.witness_file,
        data_keys_dir=paths.data_keys,
    )
    from coexarchive.datakeys import enable_for_new_archive

    if enable_for_new_archive(store, now=now_ms(), policy=settings.policy()):
        step("new archive: personal content is sealed encrypted, one data key per customer")
    step(
        f"generating {args.days} days of traffic for {args.customers} customers (seed {args.seed})"
    )
    config = SimulationConfig(seed=args.seed, customers=args.customers, days=args.days)
    sim = simulate(config)
    progress = Progress("  landing raw objects", len(sim.objects))
    upload_raw(store, sim.objects, policy=settings.policy(), progress=progress)
    progress.close()
    print(
        f"  {len(sim.objects)} raw objects, {len(sim.expected):,} distinct events, "
        f"{sim.duplicates} duplicate deliveries, {sim.malformed} malformed items"
    )
    step("running the ingest pipeline (Apache Beam, FnApiRunner)")
    from pipelines.ingest import run

    # The simulated traffic is signed with the demo app secret, captures and receipts included.
    secret = config.app_secret
    demo_auth = DeliveryAuth((secret,), (secret,), media_secrets=(secret,))
    summary = run(ingest_argv(settings, prefix="raw/", workers=args.workers), auth=demo_auth)
    print("\n".join("  " + line for line in summary.lines()))
    step("fetching the attachments from a local Graph API media server")
    receipts = _demo_fetch_media(store, settings, sim.objects, config, secret)
    if receipts:
        step("sealing the fetch receipts as media records")
        prefix = os.path.commonprefix(receipts)  # noqa: RUF071 (a key prefix, not a path)
        again = run(ingest_argv(settings, prefix=prefix, workers=1), auth=demo_auth)
        print(f"  {again.sealed:,} media records sealed")
    step(
        f"anchoring the newest archive head: RFC 3161 timestamp ({anchors.tsa.name}, openssl ts "
        f"on {anchors.tsa.url}) and witness cosignature ({anchors.witness.key.name})"
    )
    anchors.anchor(store, settings)
    step("verifying the archive, its timestamps and its witness quorum")
    report = verify_archive(
        store,
        settings.trust(),
        archive_name=DEMO_ARCHIVE,
        tsas=settings.tsas(),
        witnesses=settings.witness_policy(),
    )
    attachments = sum(chain.media_checked for chain in report.chains)
    print(
        f"  OK: {len(report.chains)} chain(s), {report.records_checked:,} rows re-hashed, "
        f"{attachments:,} attachments re-hashed, every check held"
    )
    for line in [
        *(report.timestamps.lines() if report.timestamps else []),
        *(report.witnesses.lines() if report.witnesses else []),
    ]:
        print(f"  {line}")
    step("what was archived")
    kinds: Counter[str] = Counter()
    from coexarchive.segments import Manifest, list_manifests

    for chain in report.chains:
        for key in list_manifests(store, chain.chain_id):
            kinds.update(Manifest.from_bytes(store.get(key), key=key).kinds)
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:<18} {count:>8,}")
    print(f"  quarantined items: {summary.quarantined} (kept with reasons under quarantine/v1/)")
    customer = busiest_customer(store, SimulationConfig().phone_number_id) or "CUSTOMER_ID"
    step("an evidence bundle with its anchors, verified offline (TSA and witness stopped)")
    anchors.bundle(store, settings, customer, paths.data_dir / "anchored-bundle.zip")
    return customer


class DemoAnchors:
    """A loopback TSA (``openssl ts``) and a witness for the demo run, as outside parties."""

    def __init__(self, tsa: Any, witness: Any, tsa_file: Path, witness_file: Path) -> None:
        self.tsa = tsa
        self.witness = witness
        self.tsa_file = tsa_file
        self.witness_file = witness_file

    @classmethod
    def for_demo(cls, paths: DemoPaths) -> DemoAnchors:
        from coexarchive.anchor.witness import heads_origin
        from coexarchive.anchor.witness_server import WitnessServer, WitnessState
        from coexarchive.seal.cosignature import CosignerKey
        from coexarchive.seal.keys import Ed25519Signer, TrustStore
        from coexarchive.testing.tsa import LocalTsa

        directory = paths.data_dir / "anchors"
        directory.mkdir(parents=True, exist_ok=True)
        tsa = LocalTsa(directory / "tsa", name="demo-tsa")
        tsa.start()
        key_file = paths.keys_dir / "witness.key"
        if not key_file.exists():
            Ed25519Signer.generate("witness.demo/w1").to_file(key_file)
        signer = Ed25519Signer.from_file(key_file)
        logs = {heads_origin(DEMO_ARCHIVE): TrustStore.from_file(paths.trust)}
        witness = WitnessServer(signer, logs, WitnessState(directory / "witness-state"))
        url = witness.start()
        tsa_file = tsa.write_tsa_file(directory / "tsa.txt")
        witness_file = directory / "witnesses.txt"
        witness_file.write_text(f"witness {CosignerKey.of(signer).vkey()} {url}\nquorum 1\n")
        return cls(tsa, witness, tsa_file, witness_file)

    def anchor(self, store: ObjectStore, settings: Settings) -> None:
        """Cover the newest head too when it came from a commit that does not anchor itself."""
        from coexarchive.anchor.timestamps import timestamp_heads
        from coexarchive.anchor.witness import cosign_head
        from coexarchive.archive_head import HeadWriter

        trust = settings.trust()
        signer = settings.signer()
        writer = HeadWriter(store, signer=signer, archive_name=DEMO_ARCHIVE, trust=trust)
        newest = writer.newest()
        policy = settings.witness_policy()
        if newest is None or policy is None:
            return
        timestamp_heads(store, newest, settings.tsas(), trust=trust, archive_name=DEMO_ARCHIVE)
        cosign_head(store, policy.witnesses, signer=signer, trust=trust, archive_name=DEMO_ARCHIVE)

    def bundle(self, store: ObjectStore, settings: Settings, customer: str, out: Path) -> None:
        from coexarchive.export.bundle import ExportRequest, Selection, build_bundle, read_bundle
        from coexarchive.export.verify_bundle import verify_bundle
        from coexarchive.query.views import ArchiveCatalog

        trust = settings.trust()
        request = ExportRequest(
            matter="demo-anchors",
            selection=Selection(customer=customer),
            who="coexarchive demo",
            as_of=now_ms(),
            zone="UTC",
        )
        keys = settings.readable_data_keys(clock=now_ms)
        built = build_bundle(ArchiveCatalog(store), trust, request, keys=keys)
        out.unlink(missing_ok=True)
        built.write(out)
        self.stop()  # offline from here: nothing but the bundle, keys, TSA roots, witness keys
        report = verify_bundle(
            read_bundle(out),
            trust=trust,
            tsas=settings.tsas(),
            witnesses=settings.witness_policy(),
        )
        anchors = report.anchors or {}
        times = ", ".join(f"{n} at {t}" for n, t in sorted(anchors.get("timestamps", {}).items()))
        print(f"  {out}: {report.result}, {len(report.records)} record(s) proven")
        print(
            f"  archive head {anchors.get('head')} timestamped by {times or 'none'}; "
            f"cosigned by {', '.join(anchors.get('witnesses', [])) or 'none'}"
        )
        print(
            f"  check it yourself: coexarchive verify-bundle {out} --trust {settings.trust_file} "
            f"--tsa-file {self.tsa_file} --witnesses {self.witness_file}"
        )

    def stop(self) -> None:
        self.tsa.stop()
        self.witness.stop()


def _demo_fetch_media(
    store: ObjectStore,
    settings: Settings,
    objects: list[tuple[str, bytes]],
    config: Any,
    secret: bytes,
) -> list[str]:
    """Fetch every attachment from a local Graph server on the simulation's clock; the receipt
    objects landed. Ids older than Meta's 7 days at the end of the week become named gaps."""
    from coexarchive.media.fetch import MediaFetcher, pending_refs
    from coexarchive.media.graph import GraphClient, GraphConfig
    from coexarchive.testing.graph import serve_landing, simulation_end_ms

    now = simulation_end_ms(int(config.start.timestamp() * 1000), config.days)
    graph = serve_landing(objects, clock=lambda: now)
    try:
        client = GraphClient(GraphConfig(graph.base_url, graph.token, graph.version))
        fetcher = MediaFetcher(
            store,
            store,
            client,
            policy=settings.policy(),
            receipt_secret=secret,
            clock=lambda: now,
        )
        summary = fetcher.run(pending_refs(store, store))
    finally:
        graph.stop()
    print("\n".join("  " + line for line in summary.lines()))
    return summary.receipt_objects


def busiest_customer(store: ObjectStore, chain_id: str) -> str | None:
    """The customer with the most messages in ``chain_id`` (ties: the smallest id)."""
    import io

    import pyarrow.parquet as pq

    from coexarchive.segments import Manifest, list_manifests

    counts: Counter[str] = Counter()
    for key in list_manifests(store, chain_id):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        table = pq.read_table(
            io.BytesIO(store.get(manifest.segment.key)), columns=["kind", "customer_id"]
        )
        for kind, customer in zip(
            table.column("kind").to_pylist(), table.column("customer_id").to_pylist(), strict=True
        ):
            if kind == "message" and customer:
                counts[customer] += 1
    if not counts:
        return None
    return min(counts, key=lambda customer: (-counts[customer], customer))


def _print_next_steps(
    paths: DemoPaths, server: Any, bucket: str, env: dict[str, str], customer: str
) -> None:
    data = paths.data_dir
    print()
    print(f"The demo archive stays up (server pid {server.pid}):")
    print(f"  bucket:    {bucket}")
    print(f"  endpoint:  {server.endpoint_url} (127.0.0.1 only; data in {paths.s3_dir})")
    print(f"  keys:      {paths.signing_key} seals the archive")
    print(f"             {paths.audit_key} seals the access log and holds")
    print(f"  trust:     {paths.trust} (the public keys that verify every checkpoint)")
    print()
    flag = "" if data == Path("var/demo").resolve() else f" --data-dir {data}"
    path_export = _path_export()
    command = f"{_scripts()}/coexarchive" if path_export else "coexarchive"
    print(f'Point this shell at it (or: eval "$({command} demo --env{flag})"):')
    for line in path_export:
        print(f"  {line}   # where this coexarchive is installed")
    for line in shell_exports(env):
        print(f"  {line}")
    print()
    print("Then try:")
    print("  coexarchive report compliance                      # a report: every flag, per chain")
    print(f"  coexarchive report transcript --customer {customer}   # one customer's conversation")
    print(
        f"  coexarchive export --matter demo --customer {customer} --out {data}/bundle.zip"
        "   # an evidence bundle"
    )
    print()
    print(f"Stop the server with `coexarchive demo --stop{flag}`; its data stays in {data}.")


def _steps() -> Callable[[str], None]:
    counter = iter(range(1, 100))

    def step(text: str) -> None:
        print(f"[{next(counter)}] {text}", flush=True)

    return step


def register_demo(sub: Any, bind: Bind) -> None:
    """The ``demo`` subcommand; ``bind`` hands a handler the CLI's settings factory."""
    demo = sub.add_parser(
        "demo",
        help="run the whole flow on a local embedded S3 and show what was archived",
        description="Start SeaweedFS on 127.0.0.1, generate a week of traffic for a demo "
        "business, ingest it, verify the archive and print what was archived, quarantined "
        "and where. With --keep the server stays up and the demo prints the settings to export "
        "and commands to try; a later run reuses it (and re-verifies everything in it).",
    )
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its data")
    demo.add_argument("--bucket", default=None, help=f"bucket (default {DEMO_BUCKET})")
    demo.add_argument(
        "--port",
        type=int,
        default=DEMO_PORT,
        help=f"S3 port (default {DEMO_PORT}; SeaweedFS also uses the next 4 and each + 10000)",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running and print how to use it (what `make demo` does)",
    )
    mode.add_argument("--stop", action="store_true", help="stop a server left running by --keep")
    mode.add_argument(
        "--env", action="store_true", help="print `export` lines for the running demo archive"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulated traffic")
    demo.add_argument("--customers", type=int, default=20, help="customers of the demo business")
    demo.add_argument("--days", type=int, default=7, help="days of simulated live traffic")
    demo.add_argument("--workers", type=int, default=1, help="local Beam worker processes")
    demo.add_argument(
        "--retention",
        default="GOVERNANCE:1",
        help="demo default GOVERNANCE:1 so the demo data can be removed; "
        "production uses COMPLIANCE",
    )
    demo.set_defaults(handler=bind(cmd_demo))


def _scripts() -> Path:
    return Path(sys.argv[0]).resolve().parent


def _path_export() -> list[str]:
    """The PATH line a shell needs to find this coexarchive, if it does not already."""
    found = shutil.which("coexarchive")
    if found is not None and Path(found).resolve().parent == _scripts():
        return []
    return [f'export PATH="{_scripts()}:$PATH"']
