"""``coexarchive witness``: run a C2SP witness for someone else's archive, or print its key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from coexarchive.errors import ConfigError

__all__ = ["register"]


def cmd_vkey(args: argparse.Namespace) -> int:
    from coexarchive.seal.cosignature import CosignerKey
    from coexarchive.seal.keys import Ed25519Signer

    print(CosignerKey.of(Ed25519Signer.from_file(args.key)).vkey())
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from coexarchive.seal.cosignature import CosignerKey
    from coexarchive.seal.keys import Ed25519Signer

    if args.key.exists():
        raise ConfigError(f"{args.key} exists; a witness keeps its key (choose another file)")
    signer = Ed25519Signer.generate(args.name)
    args.key.parent.mkdir(parents=True, exist_ok=True)
    signer.to_file(args.key)
    print(f"witness key: {args.key} (keep it secret; it is not an archive key)")
    print(f"witness verifier key: {CosignerKey.of(signer).vkey()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from coexarchive.anchor.witness_server import WitnessServer, WitnessState, load_logs
    from coexarchive.seal.cosignature import CosignerKey
    from coexarchive.seal.keys import Ed25519Signer

    if not args.key.exists():
        raise ConfigError(
            f"witness key {args.key} not found: create one with `coexarchive witness keygen "
            "--key FILE --name witness.example/w1` (a key of its own, never the archive's)"
        )
    signer = Ed25519Signer.from_file(args.key)
    server = WitnessServer(signer, load_logs(args.logs), WitnessState(args.state))
    print(f"witness {CosignerKey.of(signer).vkey()}")
    print(f"serving POST /add-checkpoint on http://{args.host}:{args.port}", flush=True)
    server.serve_forever(args.host, args.port)
    return 0


def register(sub: Any) -> None:
    witness = sub.add_parser(
        "witness",
        help="run a C2SP tlog-witness for an archive's heads, or print a witness key",
        description="A witness is run by a party other than the archive's operator (the firm's "
        "external auditor, another business unit). It keeps the latest checkpoint it verified "
        "per log, refuses older or inconsistent ones with the tlog-witness status codes, and "
        "cosigns the others with its own key (tlog-cosignature, cosignature/v1). With a quorum "
        "of witnesses, `coexarchive verify --witnesses FILE` detects rollback, truncation and "
        "forks of the archive heads without a pinned head.",
    )
    commands = witness.add_subparsers(dest="witness_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="answer POST /add-checkpoint for the logs in --logs",
        description="Serve the tlog-witness add-checkpoint endpoint. 400 malformed (or old "
        "size above the checkpoint's), 403 no trusted log signature, 404 unknown origin, 409 "
        "text/x.tlog.size when the old size is not the latest cosigned one (or same size, "
        "another root), 422 consistency proof does not verify, 200 with the cosignature line.",
        epilog="Logs file: one '<origin> <verifier key>' line per log; for a coexarchive "
        "archive the origin is '<archive name>/coexarchive/v1/heads' and the key is the "
        "archive's verifier key (the trust file line of the key that signs its heads).",
    )
    serve.add_argument("--key", type=Path, required=True, help="the witness's own private key")
    serve.add_argument("--logs", type=Path, required=True, help="logs file (see below)")
    serve.add_argument(
        "--state", type=Path, required=True, help="directory keeping the latest state per log"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8480, help="port to listen on")
    serve.set_defaults(handler=cmd_serve)
    keygen = commands.add_parser(
        "keygen",
        help="make the witness's own key (never added to any archive's trust file)",
        description="Write a new Ed25519 witness key (mode 0600) and print its cosignature/v1 "
        "verifier key, for the witness files of the archives it witnesses.",
    )
    keygen.add_argument("--key", type=Path, required=True, help="file to write")
    keygen.add_argument(
        "--name", required=True, help="witness name, a schema-less URL (auditor.example/w1)"
    )
    keygen.set_defaults(handler=cmd_keygen)
    vkey = commands.add_parser(
        "vkey",
        help="print the witness's cosignature/v1 verifier key, for the archive's witness file",
        description="Print '<name>+<key id>+<base64 0x04||key>': the line an archive's witness "
        "file names this witness by (`witness <vkey> <url>`).",
    )
    vkey.add_argument("--key", type=Path, required=True, help="the witness's private key")
    vkey.set_defaults(handler=cmd_vkey)
