"""``coexarchive console`` (serve the review console) and ``coexarchive console-user``.

Registered by ``coexarchive.cli``. The clock is read here, at the edge; the console signs with
its own service key (``--console-key`` / ``COEXARCHIVE_CONSOLE_KEY``), which the trust file must
list, so no user of the console holds a signing key.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, binder
from coexarchive._internal.clock import now_ms
from coexarchive.console.accounts import ROLES, AccountFile
from coexarchive.console.oidc import OidcConfig
from coexarchive.errors import ConfigError
from coexarchive.settings import Settings, config_home

__all__ = ["CONSOLE_ENV", "register"]

ACCOUNTS_ENV = "COEXARCHIVE_CONSOLE_ACCOUNTS"
OIDC_SECRET_ENV = "COEXARCHIVE_OIDC_CLIENT_SECRET"  # noqa: S105 - a variable name
CONSOLE_ENV: tuple[tuple[str, str], ...] = (
    ("COEXARCHIVE_CONSOLE_KEY", "the console's service key (its verifier line in the trust file)"),
    (ACCOUNTS_ENV, "console account file (default: $COEXARCHIVE_HOME/console-accounts.json)"),
    (OIDC_SECRET_ENV, "the console's client secret at the OpenID Provider (with --oidc-issuer)"),
)
DEFAULT_PORT = 8420


def accounts_file(explicit: Path | None, env: Mapping[str, str] | None = None) -> AccountFile:
    env = os.environ if env is None else env
    if explicit is not None:
        return AccountFile(explicit)
    if env.get(ACCOUNTS_ENV):
        return AccountFile(Path(env[ACCOUNTS_ENV]).expanduser().absolute())
    return AccountFile(config_home(env) / "console-accounts.json")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_console(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    import uvicorn

    from coexarchive.console.app import create_app
    from coexarchive.console.archive import ConsoleArchive
    from coexarchive.console.oidc import OidcClient
    from coexarchive.search.index import archive_identity, default_index_dir

    if not _loopback(args.host) and not args.behind_tls_proxy:
        raise ConfigError(
            f"refusing to listen on {args.host}: the console serves plain HTTP for loopback; "
            "put it behind a TLS-terminating proxy and pass --behind-tls-proxy"
        )
    settings: Settings = make_settings(args)
    if args.console_key is not None:
        settings = dataclasses.replace(settings, console_key_file=args.console_key)
    signer = settings.console_signer()  # refuses a key the trust file does not list
    accounts = accounts_file(args.accounts)
    oidc = _oidc(args)
    if not accounts.load() and oidc is None:
        raise ConfigError(
            f"no console accounts in {accounts.path} and no --oidc-issuer: add an account "
            "with `coexarchive console-user add NAME --role ROLE`"
        )
    archive = ConsoleArchive(
        settings.store(),
        trust=settings.trust(),
        signer=signer,
        archive_name=settings.archive_name,
        policy=settings.policy(),
        index_dir=args.index or default_index_dir(settings),
        archive_identity=archive_identity(settings),
        export_dir=args.exports or config_home() / "console-exports",
        clock=now_ms,
        keys=settings.readable_data_keys(clock=now_ms),
    )
    app = create_app(
        archive,
        accounts,
        clock=now_ms,
        oidc=OidcClient(oidc, clock=now_ms) if oidc is not None else None,
    )
    print(
        f"coexarchive console on http://{args.host}:{args.port}/ signing as {signer.name} "
        f"{signer.key_id.hex()}; accounts {accounts.path}",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
    )
    return 0


def _oidc(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OidcConfig | None:
    env = os.environ if env is None else env
    if not args.oidc_issuer:
        return None
    secret = env.get(OIDC_SECRET_ENV, "")
    if not args.oidc_client_id or not secret:
        raise ConfigError(
            f"--oidc-issuer needs --oidc-client-id and the client secret in {OIDC_SECRET_ENV}"
        )
    redirect = args.oidc_redirect_uri or f"http://{args.host}:{args.port}/login/oidc/callback"
    return OidcConfig(
        issuer=args.oidc_issuer,
        client_id=args.oidc_client_id,
        client_secret=secret,
        redirect_uri=redirect,
        roles_claim=args.oidc_roles_claim,
    )


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (12 characters or more): ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    accounts = accounts_file(args.accounts)
    account = accounts.add(args.name, _password(args), args.role)
    print(
        f"console account {account.name} ({', '.join(sorted(account.roles))}) added to "
        f"{accounts.path}"
    )
    print("add this to the user's authenticator app (it is shown once):")
    print(account.provisioning_uri(args.issuer))
    return 0


def cmd_user_list(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    accounts = accounts_file(args.accounts).load()
    if not accounts:
        print("no console accounts")
    for name in sorted(accounts):
        print(f"{name}  {', '.join(sorted(accounts[name].roles))}")
    return 0


def cmd_user_remove(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    accounts = accounts_file(args.accounts)
    accounts.remove(args.name)
    print(f"console account {args.name} removed; its sessions end at their next request")
    return 0


def _env_block() -> str:
    width = max(len(name) for name, _ in CONSOLE_ENV)
    return "console environment:\n" + "\n".join(
        f"  {name:<{width}}  {text}" for name, text in CONSOLE_ENV
    )


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)
    console = sub.add_parser(
        "console",
        help="serve the review console (a web application) on 127.0.0.1",
        description="The archive in a browser for reviewers, auditors, legal and admins: "
        "overview, search, conversations, the review queue, reports, holds and exports, and the "
        "access log. Users sign in with a console account (password + authenticator code); "
        "every view of archive data is sealed in the access log, under the user's name and the "
        "console's own service key, before it is sent. See docs/console.md.",
        epilog=_env_block(),
    )
    add_archive_options(console)
    console.add_argument("--trust", type=Path, help="trust file (env COEXARCHIVE_TRUST)")
    console.add_argument(
        "--console-key", type=Path, help="the console's key file (env COEXARCHIVE_CONSOLE_KEY)"
    )
    console.add_argument("--accounts", type=Path, help=f"account file (env {ACCOUNTS_ENV})")
    console.add_argument("--host", default="127.0.0.1", help="address to listen on")
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    console.add_argument(
        "--behind-tls-proxy",
        action="store_true",
        help="allow a non-loopback --host: only behind a proxy that terminates TLS",
    )
    console.add_argument(
        "--index", type=Path, help="search index folder (as for `coexarchive search`)"
    )
    console.add_argument(
        "--exports", type=Path, help="where bundles are written ($COEXARCHIVE_HOME/console-exports)"
    )
    oidc = console.add_argument_group("OpenID Connect (production sign-in)")
    oidc.add_argument("--oidc-issuer", help="the provider's issuer URL (discovery is read from it)")
    oidc.add_argument("--oidc-client-id", help="the console's client id at the provider")
    oidc.add_argument(
        "--oidc-redirect-uri",
        help="the callback URL registered at the provider (default: on --host and --port)",
    )
    oidc.add_argument(
        "--oidc-roles-claim", default="roles", help="ID token claim listing the console roles"
    )
    console.set_defaults(handler=bind(cmd_console))

    users = sub.add_parser(
        "console-user",
        help="console accounts: add (with a TOTP secret), list, remove",
        description="Local accounts of the review console: an argon2id password hash, a TOTP "
        "second factor and one or more roles (reviewer, auditor, legal, admin).",
        epilog=_env_block(),
    )
    usub = users.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="add an account; prints its authenticator URI once")
    add.add_argument("name", help="the sign-in name (recorded in the access log)")
    add.add_argument(
        "--role", action="append", required=True, choices=ROLES, help="a role; repeatable"
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.add_argument("--issuer", default="coexarchive", help="issuer shown by the authenticator")
    add.add_argument("--accounts", type=Path, help=f"account file (env {ACCOUNTS_ENV})")
    add.set_defaults(handler=bind(cmd_user_add))
    lst = usub.add_parser("list", help="list accounts and their roles")
    lst.add_argument("--accounts", type=Path, help=f"account file (env {ACCOUNTS_ENV})")
    lst.set_defaults(handler=bind(cmd_user_list))
    rm = usub.add_parser("remove", help="remove an account")
    rm.add_argument("name", help="the account to remove")
    rm.add_argument("--accounts", type=Path, help=f"account file (env {ACCOUNTS_ENV})")
    rm.set_defaults(handler=bind(cmd_user_remove))
