"""Builders for small, realistic archives used by the verification and tamper tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coexarchive.archive_head import write_head_after
from coexarchive.raw import DeliveryAuth
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter, Manifest, SegmentResult
from coexarchive.store.base import ObjectStore
from coexarchive.store.memory import MemoryStore

ARCHIVE = "coexarchive.test"
# The simulator signs webhooks and outbound captures with its demo app secret.
SIM_AUTH = DeliveryAuth((b"coexarchive-demo-app-secret",), (b"coexarchive-demo-app-secret",))
DAY_MS = 86_400_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z

TEXTS = ("Hi, is my order ready?", "¿Dónde está mi pedido? 📦", "مرحبا", "नमस्ते, धन्यवाद", "Olá!")


def signer(name: str = "coexarchive.test", seed: bytes = b"test") -> Ed25519Signer:
    secret = hashlib.sha256(b"coexarchive test key " + seed).digest()
    return Ed25519Signer(name, Ed25519PrivateKey.from_private_bytes(secret))


def trust_for(*signers: Ed25519Signer) -> TrustStore:
    return TrustStore.parse("".join(s.verifier_key() + "\n" for s in signers))


def make_records(
    chain_id: str, count: int, *, start_ms: int = START_MS, day: int = 0
) -> list[Record]:
    records = []
    for i in range(count):
        customer = f"4477009{i % 7:05d}"
        wamid = f"wamid.{chain_id}.{day}.{i}"
        text = TEXTS[i % len(TEXTS)]
        records.append(
            Record(
                chain_id=chain_id,
                record_id=stable_id(chain_id, "message", wamid),
                kind=Kind.MESSAGE.value,
                origin=Origin.CUSTOMER.value,
                direction=Direction.INBOUND.value,
                event_time=start_ms + day * DAY_MS + i * 60_000,
                received_time=start_ms + day * DAY_MS + i * 60_000 + 1_500,
                customer_id=customer,
                customer_wa_id=customer,
                wamid=wamid,
                msg_type="text",
                text=text,
                detail=orjson.dumps({"text": {"body": text}}, option=orjson.OPT_SORT_KEYS).decode(),
                raw_key=f"raw/date=2026-01-05/sim-{i:020d}.jsonl.zst",
                raw_line=i,
            )
        )
    return records


def midday(ms: int) -> int:
    """Noon (UTC) of the day of ``ms``. Records a few minutes apart from there stay in one day,
    so in one segment, whatever time of day a test that counts from the clock runs."""
    return ms - ms % DAY_MS + DAY_MS // 2


MINUTE_MS = 60_000


def scenario_record(chain: str, n: int, day: int, minute: int, **fields: object) -> Record:
    """Record n of a hand-written scenario: an inbound text unless ``fields`` say otherwise."""
    kind = str(fields.pop("kind", "message"))
    wamid = fields.pop("wamid", f"wamid.{chain}.{n}")
    values: dict[str, object] = {
        "chain_id": chain,
        "record_id": stable_id(kind, chain, None if wamid is None else str(wamid), n),
        "kind": kind,
        "origin": "customer",
        "direction": "inbound",
        "event_time": START_MS + day * DAY_MS + minute * MINUTE_MS,
        "wamid": wamid,
        "msg_type": "text",
        "detail": orjson.dumps({"n": n}).decode(),
    }
    values.update(fields)
    return Record(**values)  # type: ignore[arg-type]


@dataclass
class Built:
    store: ObjectStore
    signer: Ed25519Signer
    trust: TrustStore
    chain_id: str
    segments: list[SegmentResult]

    @property
    def manifests(self) -> list[Manifest]:
        return [result.manifest for result in self.segments]


def short_policy(mode: str = "GOVERNANCE", years: int = 1) -> RetentionPolicy:
    return RetentionPolicy(default=ClassRetention(mode=mode, years=years))  # type: ignore[arg-type]


def build(
    store: ObjectStore,
    *,
    chain_id: str = "900000000000001",
    days: Sequence[int] = (0, 1, 2),
    per_day: int = 20,
    policy: RetentionPolicy | None = None,
    key: Ed25519Signer | None = None,
) -> Built:
    """An archive of one chain with one segment per day."""
    key = key or signer()
    writer = ChainWriter(
        store, chain_id, signer=key, archive_name=ARCHIVE, policy=policy or short_policy()
    )
    results: list[SegmentResult] = []
    for day in days:
        day_results = writer.append(make_records(chain_id, per_day, day=day))
        results += day_results
        # Each day is one commit, as an ingest run is: its archive head follows its checkpoints.
        write_head_after(store, [r.manifest for r in day_results], signer=key, archive_name=ARCHIVE)
    return Built(store, key, trust_for(key), chain_id, results)


def use_cli_environment(
    monkeypatch: Any,
    seaweed: Any,
    store: Any,
    key: Ed25519Signer,
    directory: Path,
    *,
    auditor: str,
) -> Path:
    """Point every coexarchive command at ``store`` on the embedded S3; returns the trust file."""
    key_file, trust_file = directory / "signing.key", directory / "trust.txt"
    key.to_file(key_file)
    trust_file.write_text(key.verifier_key() + "\n")
    env = {
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "COEXARCHIVE_BUCKET": store.bucket,
        "COEXARCHIVE_ENDPOINT_URL": seaweed.endpoint_url,
        "COEXARCHIVE_SIGNING_KEY": str(key_file),
        "COEXARCHIVE_TRUST": str(trust_file),
        "COEXARCHIVE_NAME": ARCHIVE,
        "COEXARCHIVE_RETENTION": "GOVERNANCE:1",
        "COEXARCHIVE_AUDITOR": auditor,
        # Simulated traffic is signed with the demo secrets; ingest authenticates it with them.
        "COEXARCHIVE_APP_SECRETS": SIM_AUTH.app_secrets[0].decode(),
        "COEXARCHIVE_OUTBOUND_TOKEN": SIM_AUTH.capture_secrets[0].decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return trust_file


class ListingStore(MemoryStore):
    """An in-memory store that records every prefix it is asked to list."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[str] = []

    def list(self, prefix: str) -> Iterator[str]:
        self.listed.append(prefix)
        return super().list(prefix)


class WithoutPuts:
    """A store that silently skips puts under ``prefix`` (what the attacker chooses not to write),
    or raises there (a writer crashing just before that write)."""

    def __init__(self, store: ObjectStore, prefix: str, *, crash: bool = False) -> None:
        self._store, self._prefix, self._crash = store, prefix, crash

    def put(self, key: str, data: bytes, **options: Any) -> bool:
        if key.startswith(self._prefix):
            if self._crash:
                raise RuntimeError(f"crash before writing {key}")
            return True
        return self._store.put(key, data, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
