"""The ``coexarchive`` command: parses arguments, calls the library, prints.

Expected failures are :class:`~coexarchive.errors.CoexArchiveError`; they print one message and
exit 2 (1 for a verification that ran and found problems). Nothing here logs secrets or content.

Imports are lazy: building every command's parser imports the whole library (about two seconds
on a busy machine). ``coexarchive receive`` parses with its own parser and imports only the
receiver's modules, so that its port listens as early as possible after a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coexarchive import __version__
from coexarchive._internal.helpformat import Parser
from coexarchive.errors import CoexArchiveError, ConfigError, VerificationError

if TYPE_CHECKING:
    from coexarchive.settings import Settings

Handler = Callable[[argparse.Namespace], int]

# Every environment variable a command reads, by who reads it: each command's --help lists the
# ones it reads, and README.md lists them all (tests/unit/test_help.py holds both to this).
EnvVars = tuple[tuple[str, str], ...]
ARCHIVE_ENV: EnvVars = (
    ("COEXARCHIVE_BUCKET", "bucket holding the archive (default: coexarchive)"),
    ("COEXARCHIVE_RAW_BUCKET", "bucket holding raw/, when separate (default: the archive's)"),
    ("COEXARCHIVE_ENDPOINT_URL", "S3 endpoint for non-AWS servers (or AWS_ENDPOINT_URL)"),
    ("COEXARCHIVE_KMS_KEY_ID", "KMS key for SSE-KMS on objects written (default: bucket's)"),
    ("COEXARCHIVE_HOME", "where keys and the trust file live (default: config home, below)"),
    ("COEXARCHIVE_SIGNING_KEY", "signing key file (default: $COEXARCHIVE_HOME/signing.key)"),
    (
        "COEXARCHIVE_AUDIT_KEY",
        "key for access log, holds, policies, reviews (default: signing key)",
    ),
    ("COEXARCHIVE_TRUST", "trust file of verifier keys (default: $COEXARCHIVE_HOME/trust.txt)"),
    ("COEXARCHIVE_TSA", "RFC 3161 timestamp authorities (default: $COEXARCHIVE_HOME/tsa.txt)"),
    (
        "COEXARCHIVE_WITNESSES",
        "C2SP witnesses and quorum (default: $COEXARCHIVE_HOME/witnesses.txt)",
    ),
    ("COEXARCHIVE_NAME", "archive name in every checkpoint's origin (default: coexarchive.local)"),
    ("COEXARCHIVE_RETENTION", "Object Lock for new objects (default: COMPLIANCE:7)"),
    (
        "COEXARCHIVE_DATA_KEYS",
        "per-customer data keys, if personal content is sealed encrypted "
        "(default: $COEXARCHIVE_HOME/data-keys)",
    ),
    ("COEXARCHIVE_DATA_KEY_KMS", "KMS key that wraps the data keys (default: a local master key)"),
    ("COEXARCHIVE_S3_CONNECT_TIMEOUT", "seconds to connect to S3 (default: 5)"),
    ("COEXARCHIVE_S3_READ_TIMEOUT", "seconds to wait for an S3 answer (default: 10)"),
    ("COEXARCHIVE_S3_MAX_ATTEMPTS", "tries per S3 request, the first included (default: 3)"),
)
KEY_ENV: EnvVars = tuple(
    (name, text)
    for name, text in ARCHIVE_ENV
    if name in ("COEXARCHIVE_HOME", "COEXARCHIVE_SIGNING_KEY", "COEXARCHIVE_TRUST")
)
AUDITOR_ENV: EnvVars = (
    ("COEXARCHIVE_AUDITOR", "who is asking, when --as is not given (default: OS user)"),
)
AUTH_ENV: EnvVars = (
    ("COEXARCHIVE_APP_SECRETS", "Meta app secret(s), comma-separated for rotation"),
    ("COEXARCHIVE_OUTBOUND_TOKEN", "capture secret(s) that sign /outbound bodies"),
    ("COEXARCHIVE_MEDIA_SECRETS", "secret(s) that sign media fetch receipts (`media fetch`)"),
)
RECEIVE_ENV: EnvVars = (
    *AUTH_ENV,
    ("COEXARCHIVE_VERIFY_TOKEN", "token for Meta's webhook verification handshake"),
)
AWS_ENV = "AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE: boto3's usual chain."
CONFIG_HOME = (
    "config home: $COEXARCHIVE_HOME, else $XDG_CONFIG_HOME/coexarchive, else ~/.config/coexarchive"
)


def env_help(*groups: EnvVars) -> str:
    """An epilog block listing environment variables, one a line."""
    rows = [row for group in groups for row in group]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {text}" for name, text in rows]
    if any(name == "COEXARCHIVE_HOME" for name, _ in rows):
        lines.append("  " + CONFIG_HOME)
    if any(name == "COEXARCHIVE_BUCKET" for name, _ in rows):
        lines.append("  " + AWS_ENV)
    return "environment:\n" + "\n".join(lines)


EPILOG = (
    "Where the archive lives comes from the environment unless given as options; each "
    "command's --help lists the variables it reads.\n\n"
    + env_help(ARCHIVE_ENV, AUDITOR_ENV, RECEIVE_ENV)
    + "\n\nStart with `coexarchive demo`: it runs the whole flow on a local SeaweedFS."
)


def _add_archive_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("archive location")
    group.add_argument(
        "--bucket", help="bucket holding the archive (env COEXARCHIVE_BUCKET, else coexarchive)"
    )
    group.add_argument(
        "--endpoint-url", help="S3 endpoint for non-AWS servers (env COEXARCHIVE_ENDPOINT_URL)"
    )
    group.add_argument(
        "--archive-name",
        help="archive name used in checkpoint origins (env COEXARCHIVE_NAME, else "
        "coexarchive.local)",
    )
    group.add_argument(
        "--s3-connect-timeout",
        type=float,
        metavar="SECONDS",
        help="give up connecting to S3 after this long (env COEXARCHIVE_S3_CONNECT_TIMEOUT, 5)",
    )
    group.add_argument(
        "--s3-read-timeout",
        type=float,
        metavar="SECONDS",
        help="give up waiting for an S3 answer after this long (env COEXARCHIVE_S3_READ_TIMEOUT, "
        "10)",
    )
    group.add_argument(
        "--s3-max-attempts",
        type=int,
        metavar="N",
        help="tries per S3 request, the first included (env COEXARCHIVE_S3_MAX_ATTEMPTS, 3)",
    )


def _apply_s3_options(args: argparse.Namespace) -> None:
    """S3 timeout options win over the environment; through it they reach worker processes."""
    from coexarchive.store.s3 import S3Timeouts

    for name, variable in S3Timeouts.ENV.items():
        value = getattr(args, f"s3_{name}_timeout" if name != "max_attempts" else "s3_max_attempts")
        if value is not None:
            os.environ[variable] = str(value)
    S3Timeouts.from_env()  # a bad value fails here, once, with the option's name


def __getattr__(name: str) -> Any:
    # Names this module once imported eagerly stay importable from it, loaded on first use.
    if name in ("parse_time", "parse_moment"):
        from coexarchive._internal import cliutil

        return getattr(cliutil, name)
    if name == "Settings":
        from coexarchive.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    from coexarchive.settings import Settings

    _apply_s3_options(args)
    return Settings.from_env(
        bucket=getattr(args, "bucket", None),
        endpoint_url=getattr(args, "endpoint_url", None),
        archive_name=getattr(args, "archive_name", None),
        trust_file=getattr(args, "trust", None),
        key_file=getattr(args, "key", None),
        tsa_file=getattr(args, "tsa_file", None),
        witness_file=getattr(args, "witnesses", None),
        **extra,
    )


# --- keygen --------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    from coexarchive.seal.keys import Ed25519Signer
    from coexarchive.settings import Settings

    defaults = Settings.from_env()
    key_path: Path = args.key or defaults.key_file
    if key_path.exists() and not args.force:
        raise ConfigError(
            f"{key_path} exists; pass --force to replace it (old checkpoints stay "
            "verifiable only while the old public key stays in the trust file)"
        )
    signer = Ed25519Signer.generate(args.name)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    signer.to_file(key_path)
    trust_path: Path = args.trust or defaults.trust_file
    lines = trust_path.read_text().splitlines() if trust_path.exists() else []
    verifier = signer.verifier_key()
    if verifier not in lines:
        lines.append(verifier)
    trust_path.parent.mkdir(parents=True, exist_ok=True)
    trust_path.write_text("\n".join(lines) + "\n")
    print(f"signing key: {key_path} (keep it secret; separate from storage credentials)")
    print(f"trust file:  {trust_path}")
    print(f"verifier key: {verifier}")
    return 0


# --- s3 -------------------------------------------------------------------------------------------


def cmd_s3(args: argparse.Namespace) -> int:
    from coexarchive.store import seaweed_cli

    return seaweed_cli.main(args.rest)


# --- verify --------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from coexarchive._internal.cliutil import parse_moment
    from coexarchive._internal.progress import Progress
    from coexarchive.verify import (
        ArchiveVerificationError,
        Report,
        count_segments,
        default_executor,
        parse_head,
        verify_archive,
    )

    settings = _settings(args)
    store = settings.store()
    trust = settings.trust()
    from coexarchive.archive_head import parse_pinned_head
    from coexarchive.seal.head import is_head_note

    notes = [Path(path).read_bytes() for path in args.expect_head or ()]
    heads = [parse_head(note, trust) for note in notes if not is_head_note(note)]
    archive_heads = [parse_pinned_head(note, trust) for note in notes if is_head_note(note)]
    chains = [args.chain] if args.chain else None
    progress = Progress("verifying", 0) if not args.json else None
    if progress is not None and progress.enabled:
        progress.total = sum(
            _manifest_records(store, chain) for chain in (chains or _all_chains(store))
        ) or count_segments(store, chains)
    from coexarchive.verify.media import MediaCheck

    try:
        media = MediaCheck.parse(args.media)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from coexarchive.export.holds import held_keys

    job = _verify_job(args, settings, trust)
    executor = default_executor(args.workers) if job is None else None
    if job is not None and progress is not None:
        progress.close()  # the job's workers report no progress to this process
        progress = None
    try:
        report: Report = verify_archive(
            store,
            trust,
            chains=chains,
            since=args.since,
            until=args.until,
            heads=heads,
            archive_heads=archive_heads,
            archive_name=settings.archive_name,
            held_keys=held_keys(store, trust=trust),
            executor=executor,
            on_segment=progress.advance if progress else None,
            tsas=settings.tsas(),
            at=parse_moment(args.at) if args.at else None,
            witnesses=settings.witness_policy(),
            ask_witnesses=not args.offline,
            job=job,
            media=media,
        )
    except ArchiveVerificationError as exc:
        report = exc.report
    finally:
        if executor is not None:
            executor.shutdown()
        if progress is not None:
            progress.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _print_report(report)
    return 0 if report.ok else 1


def _verify_job(args: argparse.Namespace, settings: Any, trust: Any) -> Any:
    """With ``--runner``: the per-chain steps as a Beam job (``pipelines/verify.py``), else None."""
    if args.runner is None:
        if args.beam:
            raise ConfigError("arguments after `--` go to Beam: give --runner too")
        return None
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.specs import StoreSpec
    from pipelines.verify import chains_job

    beam_args = [f"--runner={args.runner}"]
    if args.runner in ("FnApiRunner", "DirectRunner") and args.workers > 1:
        # Processes, never threads: Beam 2.77's multi_threading mode lost elements here.
        beam_args += [
            f"--direct_num_workers={args.workers}",
            "--direct_running_mode=multi_processing",
        ]
    spec = StoreSpec(
        settings.bucket, settings.endpoint_url, settings.region_name, settings.sse_kms_key_id
    )
    options = PipelineOptions(beam_args + list(args.beam))
    return chains_job(spec, trust, options, output=args.verify_output)


def _all_chains(store: object) -> list[str]:
    from coexarchive.verify import chains_in

    return chains_in(store)  # type: ignore[arg-type]


def _manifest_records(store: object, chain: str) -> int:
    from coexarchive.segments import Manifest, list_manifests

    total = 0
    for key in list_manifests(store, chain):  # type: ignore[arg-type]
        total += Manifest.from_bytes(store.get(key), key=key).record_count  # type: ignore[attr-defined]
    return total


def _print_report(report: object) -> None:
    from coexarchive.verify import Report

    assert isinstance(report, Report)
    for chain in report.chains:
        print(
            f"chain {chain.chain_id}: {chain.records} records in {chain.segments} segments, "
            f"{chain.records_checked} rows re-hashed, {chain.checkpoints} checkpoints verified, "
            f"tree size {chain.tree_size}, root {chain.root_hash}"
            + (f", {chain.media_checked} attachments re-hashed" if chain.media_checked else "")
            + (
                f"; {chain.records_disposed} records disposed of under a signed disposition "
                "(their leaf hashes re-linked and re-rooted)"
                if chain.records_disposed
                else ""
            )
        )
        for warning in chain.warnings:
            print(f"  warning: {warning}")
    if report.archive_head is not None:
        print(report.archive_head.line())
    if report.timestamps is not None:
        print("\n".join(report.timestamps.lines()))
    if report.witnesses is not None:
        print("\n".join(report.witnesses.lines()))
    print("checks: " + ", ".join(f"{i}. {step}" for i, step in enumerate(report.steps, 1)))
    if report.ok:
        warnings = sum(len(chain.warnings) for chain in report.chains)
        print(
            f"OK: {len(report.chains)} chain(s) verified, every check held"
            + (f" ({warnings} warning(s) above)" if warnings else "")
        )
    else:
        print(str(VerificationError(failures=report.failures)))


# --- head -----------------------------------------------------------------------------------------


def cmd_head(args: argparse.Namespace) -> int:
    from coexarchive.segments import Manifest, list_manifests

    store = _settings(args).store()
    if args.chain is None:
        return _save_archive_head(store, args.out)
    keys = list_manifests(store, args.chain)
    if not keys:
        raise ConfigError(
            f"chain {args.chain!r} has no sealed segments in this archive "
            "(`coexarchive chains` lists those it has)"
        )
    manifest = Manifest.from_bytes(store.get(keys[-1]), key=keys[-1])
    note = store.get(manifest.checkpoint_key)
    if args.out:
        Path(args.out).write_bytes(note)
        print(f"saved the checkpoint for {manifest.tree_size} records to {args.out}")
    else:
        sys.stdout.write(note.decode("utf-8"))
    return 0


def _save_archive_head(store: object, out: str | None) -> int:
    from coexarchive.seal.head import HEAD_PREFIX, head_seq

    keys = [key for key in store.list(HEAD_PREFIX) if head_seq(key) is not None]  # type: ignore[attr-defined]
    if not keys:
        raise ConfigError("this archive has no archive head yet: ingest writes the first one")
    note: bytes = store.get(keys[-1])  # type: ignore[attr-defined]
    if out:
        Path(out).write_bytes(note)
        print(f"saved archive head {head_seq(keys[-1])} to {out}")
    else:
        sys.stdout.write(note.decode("utf-8"))
    return 0


# --- anchor --------------------------------------------------------------------------------------


def cmd_anchor(args: argparse.Namespace) -> int:
    from coexarchive.anchor.timestamps import timestamp_heads
    from coexarchive.anchor.witness import cosign_head
    from coexarchive.archive_head import HeadWriter

    settings = _settings(args)
    tsas = settings.tsas()
    policy = settings.witness_policy()
    if not tsas and policy is None:
        raise ConfigError(
            f"no outside anchor configured: neither TSA file {settings.tsa_file} nor witness "
            f"file {settings.witness_file} exists (COEXARCHIVE_TSA, COEXARCHIVE_WITNESSES; see "
            "docs/anchors.md)"
        )
    store = settings.store()
    trust = settings.trust()
    signer = settings.signer()
    writer = HeadWriter(store, signer=signer, archive_name=settings.archive_name, trust=trust)
    newest = writer.newest()
    if newest is None:
        raise ConfigError("this archive has no archive head yet: ingest writes the first one")
    failed = 0
    if tsas:
        run = timestamp_heads(store, newest, tsas, trust=trust, archive_name=settings.archive_name)
        print("\n".join([f"stored {key}" for key in run.stored]))
        print("\n".join([f"not timestamped: {failure}" for failure in run.failed]))
        print(
            f"archive head {newest.seq}: {len(run.stored)} token(s) stored, {len(run.failed)} "
            "request(s) failed; the next head seals what was stored and names what is missing"
        )
        failed += len(run.failed)
    if policy is not None:
        cosigned = cosign_head(
            store, policy.witnesses, signer=signer, trust=trust, archive_name=settings.archive_name
        )
        print("\n".join([f"stored {key}" for key in cosigned.stored]))
        print("\n".join([f"not cosigned: {failure}" for failure in cosigned.failed]))
        print(
            f"archive head {newest.seq}: {len(cosigned.stored)} new cosignature(s), "
            f"{len(cosigned.failed)} witness(es) failed"
        )
        failed += len(cosigned.failed)
    return 1 if failed else 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from coexarchive._internal.cliutil import parse_time
    from coexarchive.receive import server as receive_server

    parser = Parser(
        prog="coexarchive",
        description="Compliance archive for WhatsApp Business Coexistence: ingest, seal, verify.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"coexarchive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = sub.add_parser(
        "keygen",
        help="create an Ed25519 signing key and add its public key to a trust file",
        description="Create a checkpoint signing key (C2SP note format) and append its verifier "
        "key to the trust file. Rotate by creating a new key and keeping the old verifier line.",
    )
    keygen.add_argument("--name", default="coexarchive.local", help="key name (no spaces or '+')")
    keygen.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="where to write the new signing key, mode 600 (default: $COEXARCHIVE_SIGNING_KEY, "
        "else signing.key in the config home)",
    )
    keygen.add_argument(
        "--trust",
        type=Path,
        metavar="FILE",
        help="trust file to append the key's public verifier line to (default: "
        "$COEXARCHIVE_TRUST, else trust.txt in the config home)",
    )
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    keygen.set_defaults(handler=cmd_keygen)

    s3 = sub.add_parser(
        "s3",
        help="run the embedded SeaweedFS S3 server on 127.0.0.1 with a locked archive bucket",
        description="Run the embedded S3 server (SeaweedFS), bound to loopback only, and create "
        "the archive bucket with Object Lock. Its filer port can delete locked files: never "
        "expose it. See `coexarchive s3 --help` (--background, --env, --stop, --port).",
        add_help=False,
    )
    s3.add_argument("rest", nargs=argparse.REMAINDER, help="options of the server helper")
    s3.set_defaults(handler=cmd_s3)

    verify = sub.add_parser(
        "verify",
        help="verify the whole archive (or one chain) end to end",
        description="Re-hash every row, link the hash chains, rebuild each Merkle root, check "
        "every checkpoint signature against the trust file, look for forks and truncation, and "
        "check Object Lock retention on every object, and re-hash every stored attachment "
        "against the size and SHA-256 its sealed media record states (naming any that is "
        "missing or altered). Exit 0 only when everything holds.",
        epilog="Pin a head: keep a copy of the archive head (`coexarchive head`) or of a chain's "
        "checkpoint somewhere the writer cannot reach (another account, a witness, paper) and "
        "pass it with --expect-head; verify then proves the archive was not cut short or forked "
        "since.",
    )
    _add_archive_options(verify)
    verify.add_argument("--trust", type=Path, help="trust file (env COEXARCHIVE_TRUST)")
    verify.add_argument("--chain", help="verify one chain (business phone number id)")
    verify.add_argument("--since", type=parse_time, help="re-hash rows from this time (ISO)")
    verify.add_argument("--until", type=parse_time, help="re-hash rows before this time (ISO)")
    verify.add_argument(
        "--expect-head",
        action="append",
        metavar="FILE",
        help="archive head or chain checkpoint held outside the archive; repeatable",
    )
    verify.add_argument(
        "--tsa-file",
        type=Path,
        help="timestamp authorities whose roots the heads' RFC 3161 tokens must chain to "
        "(env COEXARCHIVE_TSA; lines '<name> <url> <roots PEM>'); without one, tokens are not "
        "checked",
    )
    verify.add_argument(
        "--at",
        metavar="TIME",
        help="also state the newest archive head a timestamp proves existed by TIME (ISO)",
    )
    verify.add_argument(
        "--witnesses",
        type=Path,
        help="witness policy (env COEXARCHIVE_WITNESSES; 'witness <vkey> <url>' lines and "
        "'quorum K'): the newest head must be cosigned by K of them, every cosignature must "
        "match the archive's heads, and each witness is asked whether it saw more heads "
        "(rollback) or another history (fork) — no --expect-head needed",
    )
    verify.add_argument(
        "--offline",
        action="store_true",
        help="check stored cosignatures only; do not ask the witnesses (cannot see a rollback)",
    )
    verify.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes re-hashing segments (with --runner FnApiRunner: the job's workers)",
    )
    verify.add_argument(
        "--runner",
        help="run the checks as a Beam job on this runner (FnApiRunner, PortableRunner, "
        "FlinkRunner, SparkRunner, DataflowRunner): segments are checked in parallel across "
        "its workers and joined per chain; same report and exit code. Runner options go after "
        "`--` (infra/SCALE-OUT.md)",
    )
    verify.add_argument(
        "--verify-output",
        help="with --runner: where the job's workers leave their results for this process "
        "(default: a local temporary directory; on a cluster a gs:// or s3:// prefix)",
    )
    verify.add_argument(
        "--media",
        default="all",
        metavar="all|none|sample=N",
        help="stored attachments to re-hash: all, none, or N per chain chosen at random "
        "(default: all)",
    )
    verify.add_argument("--json", action="store_true", help="print a JSON report")
    verify.add_argument("beam", nargs="*", help=argparse.SUPPRESS)
    verify.set_defaults(handler=cmd_verify)

    head = sub.add_parser(
        "head",
        help="print or save the newest archive head (or a chain's checkpoint), to pin it",
        description="Write the newest signed archive head, which states every chain's size and "
        "root (with --chain: that chain's latest checkpoint). Keep it where the archive's "
        "writer cannot reach it (another account, a witness, a ticket); later, "
        "`verify --expect-head FILE` proves the archive was neither cut short nor forked since.",
    )
    _add_archive_options(head)
    head.add_argument("--chain", help="a chain's checkpoint instead (business phone number id)")
    head.add_argument("--out", help="file to write (default: stdout)")
    head.set_defaults(handler=cmd_head)

    anchor = sub.add_parser(
        "anchor",
        help="timestamp the newest head (and past gaps) and submit it to the witnesses",
        description="Submit the heads log's newest checkpoint to each witness of the witness "
        "file (C2SP tlog-witness) and store their cosignatures; request an RFC 3161 timestamp "
        "over the newest archive head's note text "
        "from each authority in the TSA file, and again for every earlier head the newest head "
        "names as missing one. Tokens are stored create-only and locked under "
        "anchors/timestamps/; the next archive head seals their digests. Ingest does this after "
        "every head it writes; run this after an authority was down, or after commits (the "
        "access log, holds) that do not ask themselves. Exit 1 if any request failed.",
        epilog="TSA file: one '<name> <url> <roots PEM file>' line per authority; "
        "docs/anchors.md lists public and qualified authorities.",
    )
    _add_archive_options(anchor)
    anchor.add_argument("--trust", type=Path, help="trust file (env COEXARCHIVE_TRUST)")
    anchor.add_argument("--tsa-file", type=Path, help="timestamp authorities (env COEXARCHIVE_TSA)")
    anchor.set_defaults(handler=cmd_anchor)

    receive = sub.add_parser("receive", help=RECEIVE_HELP, description=RECEIVE_DESCRIPTION)
    receive_server.add_arguments(receive)
    receive.set_defaults(handler=receive_server.run)

    _add_pipeline_commands(sub)
    _list_environment(parser)
    return parser


RECEIVE_HELP = "run the webhook receiver (durable spool, shipper to raw/)"
RECEIVE_DESCRIPTION = (
    "Serve Meta's webhook and the outbound-capture endpoint. A delivery is answered 200 only "
    "once it is fsync'd to the local spool; a shipper lands spool segments in raw/ (create-only, "
    "object-locked) and trims them only after the upload is confirmed."
)


def receive_parser() -> argparse.ArgumentParser:
    """``coexarchive receive``'s parser alone, the same as the full parser's, help included."""
    from coexarchive.receive import server as receive_server

    parser = Parser(
        prog="coexarchive receive",
        description=RECEIVE_DESCRIPTION,
        epilog=env_help(ARCHIVE_ENV, RECEIVE_ENV),
    )
    receive_server.add_arguments(parser)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser``, depth first (a command, then its actions)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from subcommands(child)


def _list_environment(parser: argparse.ArgumentParser) -> None:
    """Append to each command's help the environment variables it reads."""
    for command in subcommands(parser):
        options = {option for action in command._actions for option in action.option_strings}
        groups: list[EnvVars] = []
        if "--endpoint-url" in options or command.prog.endswith(" receive"):
            groups.append(ARCHIVE_ENV)
        elif command.prog.endswith(" keygen"):
            groups.append(KEY_ENV)
        if "--as" in options:
            groups.append(AUDITOR_ENV)
        if command.prog.endswith(" receive"):
            groups.append(RECEIVE_ENV)
        elif "--allow-unauthenticated" in options:
            groups.append(AUTH_ENV)  # ingest authenticates raw deliveries as the receiver did
        if groups:
            block = env_help(*groups)
            command.epilog = f"{command.epilog}\n\n{block}" if command.epilog else block


def _add_pipeline_commands(sub: Any) -> None:
    from coexarchive import commands

    commands.register(sub, _add_archive_options, _settings)
    from coexarchive import chains

    chains.register(sub, _add_archive_options, _settings)
    from coexarchive.enrich import cli as enrich_cli

    enrich_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.query import cli as query_cli

    query_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.export import cli as export_cli

    export_cli.register(sub, _add_archive_options, _settings)
    from coexarchive import erasure_cli

    erasure_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.search import cli as search_cli

    search_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.media import cli as media_cli

    media_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.supervision import cli as supervision_cli

    supervision_cli.register(sub, _add_archive_options, _settings)
    from coexarchive.console import cli as console_cli

    console_cli.register(sub, _add_archive_options, _settings)
    from coexarchive import retention_cli

    retention_cli.register(sub, _add_archive_options, _settings)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["s3"]:
        # The server helper has its own options; argparse.REMAINDER cannot pass leading flags.
        from coexarchive.store import seaweed_cli

        return seaweed_cli.main(argv[1:])
    if argv[:1] == ["receive"]:
        # Only the receiver's modules: a restarted receiver listens before the rest is imported.
        from coexarchive.receive import server as receive_server

        return _call(receive_server.run, receive_parser().parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    return _call(args.handler, args)


def _call(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command's handler; expected failures print one line, not a traceback."""
    try:
        return handler(args)
    except CoexArchiveError as exc:
        print(f"coexarchive: error: {exc.diagnostics()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coexarchive: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); not an error worth a traceback.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
