// A real OpenID Provider for the console's sign-in tests: the certified `oidc-provider` package,
// on loopback, with its development sign-in pages (any name signs in as that account).
//
//   node provider.mjs PORT CLIENTS_JSON
//
// CLIENTS_JSON is a list of client metadata (client_id, client_secret, redirect_uris, ...).
// Accounts carry a `roles` claim: the console's roles for names in ROLES, none for the rest.
import Provider from "oidc-provider";

const [port, clientsJson] = process.argv.slice(2);
const ROLES = {
  rita: ["reviewer"],
  aldo: ["auditor"],
  lena: ["legal"],
  adam: ["admin"],
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: JSON.parse(clientsJson),
  claims: { openid: ["sub"], email: ["email"], roles: ["roles"] },
  // ID tokens carry the requested claims, so the console need not call userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Session: 600, Interaction: 300 },
  cookies: { keys: ["coexarchive-test-provider-cookie-key"] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.test`, roles: ROLES[id] ?? [] }),
  }),
});
provider.proxy = false;
const server = provider.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`listening ${port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
