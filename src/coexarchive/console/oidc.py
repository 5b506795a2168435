"""Console sign-in through OpenID Connect: the authorization-code flow with PKCE and a nonce.

1. :meth:`OidcClient.begin` makes a state, a nonce and a PKCE verifier, keeps them server-side
   under the state (one use, ten minutes), and returns the provider's authorization URL.
2. :meth:`OidcClient.finish` takes the state back (a state used or unknown is refused before
   the provider is asked anything), exchanges the code with the verifier, and checks the ID
   token: its signature against the provider's published keys, the issuer from discovery, the
   audience (this client; ``azp`` when there are several), expiry and issue time against the
   console's clock, and the nonce of this sign-in.
3. The roles come from the token's ``roles`` claim (or the claim configured), intersected with
   the console's roles; a user with none is refused.

The flow uses authlib's OAuth 2 client; the JWT checks use joserfc (authlib's JOSE successor).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from coexarchive.console.accounts import ROLES
from coexarchive.errors import AuthError, ConfigError

__all__ = ["OidcClient", "OidcConfig", "OidcIdentity"]

PENDING_MS: Final = 10 * 60_000
_TIMEOUT: Final = 10.0
_REFUSED: Final = "sign-in through the identity provider was refused"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    roles_claim: str = "roles"
    scope: str = "openid email roles"


@dataclass(frozen=True)
class OidcIdentity:
    subject: str
    name: str  # what the access log records: the e-mail address, else issuer-scoped subject
    roles: frozenset[str]
    id_token: str


@dataclass(frozen=True)
class _Pending:
    nonce: str
    verifier: str
    created_ms: int


class OidcClient:
    def __init__(
        self,
        config: OidcConfig,
        *,
        clock: Callable[[], int],
        http: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.http = http or requests.Session()
        self._metadata: dict[str, Any] | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = self.http.get(url, timeout=_TIMEOUT)
                response.raise_for_status()
                found = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise ConfigError(f"OpenID discovery at {url} failed: {exc}") from None
            # Discovery names the issuer that every ID token must carry (OIDC Discovery §4.3).
            if found.get("issuer") != self.config.issuer:
                raise ConfigError(
                    f"OpenID discovery at {url} names issuer {found.get('issuer')!r}, not "
                    f"{self.config.issuer!r}"
                )
            self._metadata = found
        return self._metadata

    def _keys(self) -> KeySet:
        try:
            response = self.http.get(self.metadata()["jwks_uri"], timeout=_TIMEOUT)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, KeyError, JoseError) as exc:
            raise AuthError(f"{_REFUSED}: its signing keys could not be read ({exc})") from None

    def _session(self) -> OAuth2Session:
        session = OAuth2Session(
            self.config.client_id,
            self.config.client_secret,
            scope=self.config.scope,
            redirect_uri=self.config.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        )
        session.default_timeout = _TIMEOUT
        return session

    # -- the flow ----------------------------------------------------------------------------

    def begin(self) -> tuple[str, str]:
        """The authorization URL and the state the browser must bring back."""
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = generate_token(64)
        now = self.clock()
        with self._lock:
            self._pending = {
                key: value
                for key, value in self._pending.items()
                if now - value.created_ms < PENDING_MS
            }
            self._pending[state] = _Pending(nonce, verifier, now)
        url, _ = self._session().create_authorization_url(
            self.metadata()["authorization_endpoint"],
            state=state,
            nonce=nonce,
            code_verifier=verifier,
        )
        return url, state

    def finish(self, *, state: str, browser_state: str, code: str) -> OidcIdentity:
        """The identity the provider vouches for; raises :class:`AuthError` otherwise."""
        # 1. The state is this browser's and unused (login CSRF, replayed callbacks).
        if not state or not hmac.compare_digest(state.encode(), browser_state.encode()):
            raise AuthError(f"{_REFUSED}: the answer does not belong to this browser")
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or self.clock() - pending.created_ms >= PENDING_MS:
            raise AuthError(f"{_REFUSED}: the sign-in was already used or has expired")
        # 2. The code, with the PKCE verifier, for tokens.
        try:
            token = self._session().fetch_token(
                self.metadata()["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.verifier,
            )
        except Exception as exc:  # authlib raises its own errors and requests' alike
            raise AuthError(f"{_REFUSED}: the code was not accepted ({exc})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AuthError(f"{_REFUSED}: no ID token came back")
        return self.identity(id_token, nonce=pending.nonce)

    def identity(self, id_token: str, *, nonce: str) -> OidcIdentity:
        """Check an ID token (steps 3 to 5) and read the identity and roles from it."""
        metadata = self.metadata()
        algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = [a for a in algorithms if a != "none" and not a.startswith("HS")]
        # 3. The signature, by a key the provider publishes, with an asymmetric algorithm.
        try:
            decoded = jwt.decode(id_token, self._keys(), algorithms=allowed)
        except (JoseError, ValueError) as exc:
            raise AuthError(
                f"{_REFUSED}: the ID token's signature does not verify ({exc})"
            ) from None
        claims = decoded.claims
        # 4. Issuer, audience, expiry, issue time and nonce.
        registry = jwt.JWTClaimsRegistry(
            now=lambda: self.clock() // 1000,
            leeway=60,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise AuthError(f"{_REFUSED}: the ID token was not for this sign-in ({exc})") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise AuthError(f"{_REFUSED}: the ID token was issued to another party")
        # 5. Roles the console knows, from the configured claim.
        granted = claims.get(self.config.roles_claim) or []
        roles = frozenset(r for r in granted if isinstance(r, str)) & frozenset(ROLES)
        if not roles:
            raise AuthError(f"{_REFUSED}: the account has no console role")
        subject = str(claims["sub"])
        email = claims.get("email")
        name = str(email) if isinstance(email, str) and email else f"{subject}@{self.config.issuer}"
        return OidcIdentity(subject, name, roles, id_token)

    def logout_url(self, id_token: str | None, post_logout: str) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not endpoint:
            return None
        request = requests.Request(
            "GET",
            endpoint,
            params={
                "id_token_hint": id_token or "",
                "post_logout_redirect_uri": post_logout,
                "client_id": self.config.client_id,
            },
        ).prepare()
        return str(request.url)
