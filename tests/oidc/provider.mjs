// A real OAuth 2.1 authorization server / OpenID Provider on loopback for the tests of the
// server's OAuth resource-server mode: npm's certified `oidc-provider` (installed by
// scripts/oidc-setup), configured as an MCP deployment would configure its own: open dynamic
// client registration, public clients with PKCE S256, RFC 8707 resource indicators that yield
// RFC 9068 JWT access tokens for exactly one resource, and the built-in login and consent pages
// (devInteractions) that a test drives over HTTP. tests/common/oidc.rs starts it.
//
//   node provider.mjs --provider DIR --port PORT --resource URL --jwks FILE \
//        [--path /realms/test] [--ttl SECONDS] [--clients FILE] [--opaque --introspector ID:SECRET]
//        [--audience AUD]
//   node provider.mjs genkey --kid KID [--alg RS256|ES256] --out-jwk FILE --out-pem FILE
//
// --provider is the installed oidc-provider package (or ONCE_OIDC_PROVIDER): an ES module import
// resolves from this file's folder only, and the package lives under target/, not here.
// Ready when it prints `listening http://127.0.0.1:PORT` on stdout; `--port 0` takes a free port
// and prints it, and a restart passes that port again. Every HTTP request is logged to stderr as
// `request METHOD PATH`, so a test can count fetches of the JWKS.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

// oidc-provider 9 calls URL.parse (Node 20.18) and crypto.hash (Node 20.12); say so plainly
// rather than failing in the middle of a request.
if (typeof URL.parse !== 'function') {
  fail(`Node ${process.version} is too old for oidc-provider 9; use Node 20.19 or later`);
}

const SCOPES = 'orders:read orders:write';

// Writes a new private signing key twice: as a JWK for the provider's JWKS file, and as PKCS#8
// PEM, which jsonwebtoken's EncodingKey::from_rsa_pem / from_ec_pem read, so a test can sign
// tokens with the very key the provider signs with.
function genkey(args) {
  const { values } = parseArgs({
    args,
    options: {
      kid: { type: 'string' },
      alg: { type: 'string', default: 'RS256' },
      'out-jwk': { type: 'string' },
      'out-pem': { type: 'string' },
    },
  });
  if (!values.kid || !values['out-jwk'] || !values['out-pem']) {
    fail('genkey needs --kid, --out-jwk and --out-pem');
  }
  let pair;
  if (values.alg === 'RS256') {
    pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (values.alg === 'ES256') {
    pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else {
    fail(`genkey: unsupported --alg ${values.alg} (RS256 or ES256)`);
  }
  const jwk = {
    ...pair.privateKey.export({ format: 'jwk' }),
    kid: values.kid,
    alg: values.alg,
    use: 'sig',
  };
  writeFileSync(values['out-jwk'], `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  writeFileSync(values['out-pem'], pair.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
    mode: 0o600,
  });
}

async function serve(args) {
  const { values } = parseArgs({
    args,
    options: {
      provider: { type: 'string', default: process.env.ONCE_OIDC_PROVIDER },
      port: { type: 'string', default: '0' },
      path: { type: 'string', default: '' },
      resource: { type: 'string' },
      jwks: { type: 'string' },
      ttl: { type: 'string', default: '600' },
      clients: { type: 'string' },
      // Opaque access tokens for the resource, which the confidential client ID:SECRET (the
      // resource server) introspects; the revocation endpoint is on too.
      opaque: { type: 'boolean', default: false },
      introspector: { type: 'string' },
      // The `aud` of the resource's tokens instead of the resource URL: Entra ID writes the
      // API's application (client) id there, Keycloak by default `account`.
      audience: { type: 'string' },
    },
  });
  if (values.opaque && !values.introspector) fail('--opaque needs --introspector ID:SECRET');
  const [introspectorId, introspectorSecret] = (values.introspector ?? '').split(':');
  if (!values.provider) fail('--provider DIR (or ONCE_OIDC_PROVIDER) names the installed oidc-provider');
  if (!values.resource) fail('--resource URL is the one resource tokens are issued for');
  if (!values.jwks) fail('--jwks FILE holds the private signing keys, the first signs');
  const prefix = values.path.replace(/\/+$/, '');
  if (prefix && !prefix.startsWith('/')) fail('--path starts with /');
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) fail('--ttl is a positive number of seconds');

  const pkg = JSON.parse(readFileSync(join(values.provider, 'package.json'), 'utf8'));
  const entry = pathToFileURL(join(values.provider, pkg.main ?? 'index.js')).href;
  const { default: Provider, errors } = await import(entry);
  const memory = pathToFileURL(join(values.provider, 'lib/adapters/memory_adapter.js')).href;
  const { default: MemoryAdapter } = await import(memory);

  const { keys } = JSON.parse(readFileSync(values.jwks, 'utf8'));
  if (!keys?.length) fail(`${values.jwks} holds no keys`);
  // Fail here, naming the file, on a key Node cannot read.
  keys.forEach((key) => createPrivateKey({ key, format: 'jwk' }));
  const signing = { alg: keys[0].alg ?? 'RS256', kid: keys[0].kid };

  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(values.port), '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const origin = `http://127.0.0.1:${port}`;

  const clients = values.clients ? new ClientFile(values.clients) : null;
  const provider = new Provider(`${origin}${prefix}`, {
    // Registered clients survive a restart (a key rotation restarts the provider): a real
    // authorization server keeps them, and a client that cached its client_id must not break.
    // Everything else (sessions, codes, grants) is the package's in-memory store.
    adapter: (model) => (model === 'Client' && clients ? clients : new MemoryAdapter(model)),
    jwks: { keys },
    // Fixed per process: nothing signed with them outlives a restart that matters to a test.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    // The resource server's own client, which authenticates to introspect tokens.
    clients: values.introspector
      ? [
          {
            client_id: introspectorId,
            client_secret: introspectorSecret,
            grant_types: [],
            response_types: [],
            redirect_uris: [],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ]
      : [],
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // Open registration (no initial access token), as MCP clients expect.
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The exchange may leave out `resource` when the code was granted for exactly one.
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, indicator) {
          if (indicator !== values.resource) {
            throw new errors.InvalidTarget(`this server issues tokens for ${values.resource} only`);
          }
          return {
            scope: SCOPES,
            accessTokenTTL: ttl,
            accessTokenFormat: values.opaque ? 'opaque' : 'jwt',
            ...(values.audience ? { audience: values.audience } : {}),
            jwt: { sign: signing },
          };
        },
      },
    },
    // The resource's scopes are also listed here, as Keycloak lists its client scopes: then
    // discovery advertises them and a registration that names them (`scope` metadata, as MCP
    // clients send) is accepted. Access tokens still carry only what the resource server
    // defines and the user granted.
    scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
    // Registration defaults ID tokens to RS256 and refuses a client when no key can sign that
    // (an ES256-only JWKS): default to the algorithm of the key there is.
    clientDefaults: { id_token_signed_response_alg: signing.alg },
    // PKCE for every client, confidential ones too, as OAuth 2.1 requires; S256 is the only
    // method oidc-provider 9 knows.
    pkce: { required: () => true },
    ttl: { AccessToken: ttl },
    async findAccount(_ctx, sub) {
      return { accountId: sub, claims: async () => ({ sub, ...profile(sub) }) };
    },
    // Claims a resource server reads from a JWT access token; present only when a user
    // authorized (not on client-credentials tokens).
    async extraTokenClaims(_ctx, token) {
      return token.accountId ? profile(token.accountId) : undefined;
    },
  });

  const callback = provider.callback();
  const wellKnown = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'];
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    console.error(`request ${req.method} ${path}`);
    if (!prefix) {
      callback(req, res);
      return;
    }
    // The issuer has a path (as Keycloak's realms do): oidc-provider serves it mounted under
    // that path, which gives `{issuer}/.well-known/…`. RFC 8414 puts the well-known segment
    // first (`/.well-known/oauth-authorization-server{path}`), and MCP clients try that (and
    // the same for openid-configuration) first: rewrite those to the mounted form.
    const inserted = wellKnown.find((known) => path === `${known}${prefix}`);
    if (inserted) {
      req.originalUrl = `${prefix}${inserted}`;
      req.url = inserted;
      callback(req, res);
    } else if (path === prefix || path.startsWith(`${prefix}/`)) {
      // oidc-provider takes the mount path from the part of originalUrl before req.url.
      req.originalUrl = req.url;
      req.url = req.url.slice(prefix.length) || '/';
      callback(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });

  console.log(`listening ${origin}`);
}

function profile(sub) {
  return { email: `${sub}@example.test`, preferred_username: sub };
}

// The `Client` model of oidc-provider's adapter interface, kept in a JSON file: the only state
// that survives a restart. Registrations have no expiry here.
class ClientFile {
  constructor(file) {
    this.file = file;
    this.clients = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  }

  save() {
    writeFileSync(this.file, JSON.stringify(this.clients));
  }

  async upsert(id, payload) {
    this.clients[id] = payload;
    this.save();
  }

  async find(id) {
    return this.clients[id];
  }

  async destroy(id) {
    delete this.clients[id];
    this.save();
  }

  async findByUid() {}

  async findByUserCode() {}

  async consume() {}

  async revokeByGrantId() {}
}

// Last: the top-level await would otherwise reach ClientFile before its class is defined.
if (process.argv[2] === 'genkey') {
  genkey(process.argv.slice(3));
} else {
  await serve(process.argv.slice(2));
}
