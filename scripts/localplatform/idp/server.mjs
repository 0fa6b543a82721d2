// The local platform's IdP: oidc-provider configured to behave like ESCAPE IAM (INDIGO IAM).
//
// Test and dev infrastructure, never shipped. Started by scripts/localplatform/idp.py, which
// writes the JSON config this reads (argv[2]) and the TLS material it names. What IAM does
// and oidc-provider does not do out of the box is added here:
//   * every access token is a JWT with `aud` and `scope` (Rucio validates them offline);
//   * a userinfo endpoint that accepts those JWTs (oidc-provider's refuses tokens with `aud`);
//   * RFC 8693 token exchange (the hub swaps the login token for a Rucio-audience token);
//   * clients registered at runtime through a loopback admin endpoint (the hub's port changes per run);
//   * signing keys, cookie keys, clients, grants and refresh tokens persisted under the state
//     dir, so a stop/start (an IdP outage) keeps earlier tokens valid.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ISSUER = config.issuer; // with the trailing slash: Rucio compares `iss` as a string
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SUBJECT_TOKEN_TYPES = new Set([ACCESS_TOKEN_TYPE, 'urn:ietf:params:oauth:token-type:jwt']);
// Resource indicators are URIs; IAM audiences ("rucio") are not. These two URN forms carry
// audiences through oidc-provider's resource machinery (grants, refresh) unchanged.
const DEFAULT_RESOURCE = 'urn:datalake:idp:default';
const AUDIENCE_RESOURCE_PREFIX = 'urn:datalake:idp:audience:';

// ---------------------------------------------------------------------------------------------
// Users and groups: the fixture file is the directory. Group names are IAM's ("escape/gpu");
// `wlcg.groups` and `eduperson_entitlement` are derived the way IAM renders them.

const users = JSON.parse(fs.readFileSync(config.users_file, 'utf8')).users;
const usersBySub = new Map(users.map((u) => [u.sub, u]));
const usersByName = new Map(users.map((u) => [u.username, u]));

function userClaims(user) {
  const groups = user.groups ?? [];
  return {
    sub: user.sub,
    name: user.name,
    given_name: user.given_name,
    family_name: user.family_name,
    preferred_username: user.username,
    email: user.email,
    email_verified: true,
    organisation_name: 'escape',
    groups,
    'wlcg.groups': groups.map((g) => `/${g}`),
    eduperson_entitlement: groups.map((g) => `urn:mace:escape:group:${g.replaceAll('/', ':')}`),
    // Site-specific claims some users carry and others do not (e.g. `rucio_account`, as a site
    // can configure IAM to send the Rucio account): released with `profile`.
    ...(user.idp_claims ?? {}),
  };
}

// Every site-specific claim name any fixture user carries.
const EXTRA_CLAIMS = [...new Set(users.flatMap((u) => Object.keys(u.idp_claims ?? {})))];

// Which claims each scope releases (IAM: `profile` carries groups; wlcg.groups and
// eduperson_entitlement have their own scopes).
const CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'organisation_name', 'groups', ...EXTRA_CLAIMS],
  email: ['email', 'email_verified'],
  'wlcg.groups': ['wlcg.groups'],
  eduperson_entitlement: ['eduperson_entitlement'],
};
const SCOPES = [
  'openid', 'offline_access', 'profile', 'email', 'wlcg.groups', 'eduperson_entitlement',
  'wlcg', 'storage.read:/', 'storage.modify:/', 'storage.create:/',
];

function claimsForScope(user, scope) {
  const all = userClaims(user);
  const out = {};
  for (const s of scope.split(' ')) {
    for (const claim of CLAIMS[s] ?? []) {
      if (all[claim] !== undefined) out[claim] = all[claim];
    }
  }
  out.sub = user.sub;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Persistence: one JSON file, written atomically. Writes are coalesced (at most one per
// FLUSH_DELAY_MS, and a final one when the process exits on TERM/INT): rewriting the whole file
// on every change made each login cost O(store size) and was the test IdP's own bottleneck in
// the benchmarks. Expired entries are dropped on load and at each write.

const FLUSH_DELAY_MS = 200;

const store = (() => {
  let data = {};
  try {
    data = JSON.parse(fs.readFileSync(config.store_file, 'utf8'));
  } catch {
    data = {};
  }
  let timer = null;
  function prune() {
    const now = Date.now() / 1000;
    for (const model of Object.values(data)) {
      for (const [id, entry] of Object.entries(model)) {
        if (entry.expiresAt && entry.expiresAt < now) delete model[id];
      }
    }
  }
  function write() {
    if (timer) clearTimeout(timer);
    timer = null;
    prune();
    const tmp = `${config.store_file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(data), { mode: 0o600 });
    fs.renameSync(tmp, config.store_file);
  }
  function flush() {
    timer ??= setTimeout(write, FLUSH_DELAY_MS);
  }
  // 'exit' handlers run synchronously, so a pending write lands before the process is gone.
  process.on('exit', () => {
    if (timer) write();
  });
  prune();
  return { data, flush };
})();

class FileAdapter {
  constructor(name) {
    this.name = name;
    store.data[name] ??= {};
    this.items = store.data[name];
    // Sessions are looked up by uid on every request that carries the IdP's cookie.
    this.byUid = new Map();
    for (const [id, entry] of Object.entries(this.items)) {
      if (entry.payload.uid) this.byUid.set(entry.payload.uid, id);
    }
  }

  async upsert(id, payload, expiresIn) {
    this.items[id] = { payload, expiresAt: expiresIn ? Date.now() / 1000 + expiresIn : undefined };
    if (payload.uid) this.byUid.set(payload.uid, id);
    store.flush();
  }

  #live(entry) {
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now() / 1000) return undefined;
    return entry.payload;
  }

  async find(id) {
    return this.#live(this.items[id]);
  }

  async findByUid(uid) {
    const id = this.byUid.get(uid);
    return id === undefined ? undefined : this.#live(this.items[id]);
  }

  async findByUserCode(userCode) {
    return this.#live(Object.values(this.items).find((e) => e.payload.userCode === userCode));
  }

  async consume(id) {
    if (this.items[id]) {
      this.items[id].payload.consumed = Math.floor(Date.now() / 1000);
      store.flush();
    }
  }

  async destroy(id) {
    const uid = this.items[id]?.payload?.uid;
    if (uid !== undefined && this.byUid.get(uid) === id) this.byUid.delete(uid);
    delete this.items[id];
    store.flush();
  }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of Object.entries(this.items)) {
      if (entry.payload.grantId === grantId) await this.destroy(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Keys: generated once per state dir and kept, so tokens survive a restart.

function loadOrCreateJwks() {
  if (fs.existsSync(config.jwks_file)) return JSON.parse(fs.readFileSync(config.jwks_file, 'utf8'));
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = crypto.createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  const jwks = { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] };
  fs.writeFileSync(config.jwks_file, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

const jwks = loadOrCreateJwks();
const publicJwks = {
  keys: jwks.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub), // eslint-disable-line no-unused-vars
};
const localKeySet = jose.createLocalJWKSet(publicJwks);

/** Verify a JWT we issued (signature, issuer, expiry); throws on anything wrong. */
async function verifyOwnJwt(token) {
  const { payload } = await jose.jwtVerify(token, localKeySet, { issuer: ISSUER, algorithms: ['RS256'] });
  return payload;
}

// ---------------------------------------------------------------------------------------------
// Lifetimes: per client (registered metadata) over per run (config) over IAM-like defaults.

const CLIENT_TTL_KEYS = ['access_token_ttl', 'id_token_ttl', 'refresh_token_ttl'];

function clientValue(client, key) {
  if (!client) return undefined;
  const camel = key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  return client[key] ?? client[camel];
}

function ttl(key, fallback) {
  return (ctx, _token, client) => {
    const value = clientValue(client ?? ctx?.oidc?.client, key);
    return Number.isInteger(value) && value > 0 ? value : (config[key] ?? fallback);
  };
}

/** The audiences a resource indicator stands for (see DEFAULT_RESOURCE). */
function audiencesFor(resource, client) {
  if (resource === DEFAULT_RESOURCE) {
    const configured = clientValue(client, 'default_audience');
    if (Array.isArray(configured) && configured.length) return configured;
    return [client.clientId];
  }
  if (resource?.startsWith(AUDIENCE_RESOURCE_PREFIX)) {
    return decodeURIComponent(resource.slice(AUDIENCE_RESOURCE_PREFIX.length)).split(' ');
  }
  return [resource];
}

/** Every resource server takes every scope and gets RS256 JWTs; `aud` is fixed up in the customizer. */
function resourceServerInfo(resource) {
  return {
    scope: SCOPES.join(' '), audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } },
  };
}

// ---------------------------------------------------------------------------------------------
// The provider.

const provider = new Provider(ISSUER, {
  adapter: FileAdapter,
  jwks,
  cookies: { keys: config.cookie_keys },
  claims: CLAIMS,
  scopes: SCOPES,
  // IAM puts the profile claims in the id token itself; GenericOAuthenticator may read either.
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    const user = usersBySub.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => userClaims(user) };
  },
  extraClientMetadata: {
    properties: [...CLIENT_TTL_KEYS, 'default_audience'],
    validator(_ctx, key, value) {
      if (value === undefined) return;
      if (CLIENT_TTL_KEYS.includes(key) && !(Number.isInteger(value) && value > 0)) {
        throw new errors.InvalidClientMetadata(`${key} must be a positive integer (seconds)`);
      }
      if (key === 'default_audience'
          && !(Array.isArray(value) && value.every((v) => typeof v === 'string' && v))) {
        throw new errors.InvalidClientMetadata('default_audience must be a list of strings');
      }
    },
  },
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  features: {
    devInteractions: { enabled: false },
    // Service tokens (e.g. a Rucio test admin) without a user; register the client with this grant.
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Every token gets a resource, so every access token is a JWT with `aud`, as IAM's are.
      defaultResource: async () => DEFAULT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => resourceServerInfo(resource),
    },
  },
  formats: {
    customizers: {
      // IAM-shaped access tokens: the real audiences, plus groups where IAM puts them.
      async jwt(_ctx, token, jwt) {
        const resource = token.resourceServer?.identifier() ?? token.aud;
        const auds = audiencesFor(resource, token.client);
        jwt.payload.aud = auds.length === 1 ? auds[0] : auds;
        const user = usersBySub.get(token.accountId);
        const scopes = new Set((token.scope ?? '').split(' '));
        if (user) {
          const claims = userClaims(user);
          if (scopes.has('profile')) {
            jwt.payload.preferred_username = claims.preferred_username;
            jwt.payload.groups = claims.groups;
          }
          if (scopes.has('wlcg.groups')) {
            jwt.payload['wlcg.groups'] = claims['wlcg.groups'];
            jwt.payload['wlcg.ver'] = '1.0';
          }
        }
      },
    },
  },
  ttl: {
    AccessToken: ttl('access_token_ttl', 3600),
    ClientCredentials: ttl('access_token_ttl', 3600),
    IdToken: ttl('id_token_ttl', 3600),
    RefreshToken: ttl('refresh_token_ttl', 14 * 24 * 3600),
    AuthorizationCode: 120,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 30 * 24 * 3600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  routes: { userinfo: '/userinfo' },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>${esc(out.error)}</h1><p>${esc(out.error_description ?? '')}</p>`);
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));

// ---------------------------------------------------------------------------------------------
// RFC 8693 token exchange: a confidential client swaps a user's access token for one with
// another audience (the hub asks for `rucio`). Scopes may only narrow.

const exchangeParams = ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope',
  'requested_token_type', 'actor_token', 'actor_token_type'];

async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  if (client.clientAuthMethod === 'none') {
    throw new errors.UnauthorizedClient('token exchange needs a confidential client');
  }
  if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
  if (params.subject_token_type && !SUBJECT_TOKEN_TYPES.has(params.subject_token_type)) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens can be requested');
  }
  let subject;
  try {
    subject = await verifyOwnJwt(params.subject_token);
  } catch (err) {
    throw new errors.InvalidGrant(`subject_token is invalid or expired (${err.code ?? err.message})`);
  }
  const user = usersBySub.get(subject.sub);
  if (!user) throw new errors.InvalidGrant('subject_token does not belong to a user');
  exchangesBySub.set(user.sub, (exchangesBySub.get(user.sub) ?? 0) + 1);

  const held = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  const requested = params.scope ? params.scope.split(' ').filter(Boolean) : [...held];
  const missing = requested.filter((s) => !held.has(s));
  if (missing.length) {
    throw new errors.InvalidScope('requested scope exceeds the subject token\'s', missing.join(' '));
  }
  const asList = (v) => (v === undefined ? [] : [].concat(v));
  let audiences = [...asList(params.audience), ...asList(params.resource)];
  if (!audiences.length) audiences = audiencesFor(DEFAULT_RESOURCE, client);
  const resource = AUDIENCE_RESOURCE_PREFIX + encodeURIComponent(audiences.join(' '));
  const scope = requested.join(' ');

  const at = new provider.AccessToken({ accountId: user.sub, client, gty: 'token_exchange', scope });
  at.resourceServer = new provider.ResourceServer(
    resource,
    resourceServerInfo(resource),
  );
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  const body = {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: at.expiration,
    scope,
  };

  // A refresh token lets the exchanging client renew this audience without the user's token.
  if (requested.includes('offline_access') && client.grantTypeAllowed('refresh_token')) {
    const grant = new provider.Grant({ accountId: user.sub, clientId: client.clientId });
    const oidcScopes = requested.filter((s) => Object.hasOwn(CLAIMS, s) || s === 'offline_access');
    if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
    grant.addResourceScope(resource, scope);
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({
      accountId: user.sub, client, grantId, gty: 'token_exchange', scope, resource, rotations: 0,
    });
    body.refresh_token = await rt.save();
  }
  ctx.body = body;
}

provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, exchangeParams, ['audience', 'resource']);

// ---------------------------------------------------------------------------------------------
// Fault mode (tests only): the token endpoint answers with bodies that echo secrets.
//
// `POST /admin/faults {"grant_types": [...], "shape": "...", "remaining": n}` arms it (`{}`
// disarms it). The real grant still runs first, so the tokens a faulty reply echoes are real
// ones: the one just issued, the refresh or subject token sent, the code verifier, the client
// secret — verbatim, cut short, base64- or URL-encoded, as a careless IdP or proxy would.
// `GET /admin/faults` lists every token and secret the token endpoint issued or received (faulty
// replies or not) since the process started, for leak scans.

let fault = null;
const echoed = new Set();

// Token endpoint calls counted (tests only, `GET /admin/token-requests`): by grant type, and the
// token exchanges by the subject's user, so a test can tell which calls a hub made for whom.
const requestsByGrant = new Map();
const exchangesBySub = new Map();

const b64 = (v) => Buffer.from(v).toString('base64');
const b64url = (v) => Buffer.from(v).toString('base64url');

const FAULT_SHAPES = {
  // An OAuth error whose description and extra fields carry the tokens.
  'oauth-error': (t) => [400, 'application/json', JSON.stringify({
    error: 'invalid_grant',
    error_description: `token ${t.sent} is no longer valid; a new one was issued: ${t.issued}`,
    refresh_token: t.refresh,
  })],
  // A 5xx text page from a proxy in front of the IdP, dumping the request.
  'proxy-dump': (t) => [502, 'text/plain', `upstream failed for Authorization: Basic ${b64(`${t.clientId}:${t.secret}`)}\n`
    + `body: grant_type=x&refresh_token=${encodeURIComponent(t.refresh)}&client_secret=${encodeURIComponent(t.secret)}`],
  // A 500 HTML error page with base64 and URL-encoded echoes.
  'html-error': (t) => [500, 'text/html', `<html><body><h1>Internal error</h1><pre>state=${b64(t.issued)}\n`
    + `ctx=${encodeURIComponent(b64(t.refresh))} k=${b64url(t.secret)}</pre></body></html>`],
  // A 200 reply without an access token, the tokens under other names.
  'no-access-token': (t) => [200, 'application/json', JSON.stringify({
    token_type: 'Bearer', expires_in: 60, token: t.issued, rt: t.refresh, debug: `${t.clientId}:${t.secret}`,
  })],
  // A 200 reply that is not JSON at all (form-encoded).
  'not-json': (t) => [200, 'application/x-www-form-urlencoded',
    `access_token=${t.issued}&refresh_token=${t.refresh}&secret=${t.secret}`],
  // Pieces of tokens in free text.
  partial: (t) => [400, 'application/json', JSON.stringify({
    error: 'invalid_request',
    error_description: `bad token starting ${t.refresh.slice(0, 20)}, issued ${t.issued.slice(0, 40)}..., `
      + `client ${t.secret.slice(2, 24)}`,
  })],
};

function faultTokens(ctx) {
  const { params = {}, client } = ctx.oidc ?? {};
  const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
  const pick = (...values) => values.find((v) => typeof v === 'string' && v.length > 0) ?? '';
  const t = {
    clientId: client?.clientId ?? '',
    secret: client?.clientSecret ?? '',
    sent: pick(params.refresh_token, params.subject_token, params.code_verifier, params.code),
    issued: pick(body.access_token, body.id_token, body.refresh_token, params.subject_token, params.refresh_token),
    refresh: pick(body.refresh_token, params.refresh_token, params.subject_token, params.code_verifier),
  };
  for (const v of [t.secret, t.sent, t.issued, t.refresh, body.access_token, body.id_token, body.refresh_token]) {
    if (typeof v === 'string' && v.length >= 8) echoed.add(v);
  }
  return t;
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.method !== 'POST') return;
  const tokens = faultTokens(ctx); // every token endpoint call: what it issued and received is scanned for
  const grantType = ctx.oidc?.params?.grant_type;
  requestsByGrant.set(String(grantType), (requestsByGrant.get(String(grantType)) ?? 0) + 1);
  if (!fault) return;
  if (fault.grant_types && !fault.grant_types.includes(grantType)) return;
  if (fault.remaining !== undefined) {
    if (fault.remaining <= 0) return;
    fault.remaining -= 1;
  }
  const [status, type, body] = FAULT_SHAPES[fault.shape](tokens);
  ctx.status = status;
  ctx.type = type;
  ctx.body = body;
});

// ---------------------------------------------------------------------------------------------
// HTML: a plain form a browser and a `requests.Session` can both drive.

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:3em auto}input{display:block;margin:.4em 0 1em;width:100%}</style>
</head><body>${body}</body></html>`;
}

function loginPage(uid, clientId, error) {
  return page('ESCAPE IAM (local) - sign in', `<h1>ESCAPE IAM (local test IdP)</h1>
<p>Sign in to continue to <b>${esc(clientId)}</b>.</p>
${error ? `<p class="error" style="color:#b00">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<input type="hidden" name="prompt" value="login">
<label>Username <input name="login" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button></form>`);
}

function consentPage(uid, clientId, scopes) {
  return page('ESCAPE IAM (local) - approve', `<h1>Approve access</h1>
<p><b>${esc(clientId)}</b> asks for: ${scopes.map((s) => `<code>${esc(s)}</code>`).join(' ')}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<input type="hidden" name="prompt" value="consent">
<button type="submit">Approve</button></form>`);
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function readForm(req, limit = 64 * 1024) {
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > limit) throw new Error('request body too large');
  }
  return new URLSearchParams(raw);
}

async function handleInteraction(req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm))?$/);
  if (!m) return send(res, 404, page('Not found', '<h1>not found</h1>'));
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  const action = m[2];
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return send(res, 200, loginPage(details.uid, params.client_id));
    return send(res, 200, consentPage(details.uid, params.client_id, String(params.scope ?? '').split(' ')));
  }
  if (req.method !== 'POST') return send(res, 405, page('Method not allowed', '<h1>405</h1>'));
  const form = await readForm(req);
  if (action === 'login') {
    const user = usersByName.get(form.get('login') ?? '');
    const ok = user && crypto.timingSafeEqual(
      crypto.createHash('sha256').update(form.get('password') ?? '').digest(),
      crypto.createHash('sha256').update(user.password).digest(),
    );
    if (!ok) return send(res, 200, loginPage(details.uid, params.client_id, 'Invalid username or password.'));
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  // consent: grant what is missing (the user pressed Approve)
  const { accountId } = details.session;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, {
    mergeWithLastSubmission: true,
  });
}

// ---------------------------------------------------------------------------------------------
// userinfo accepting our JWT access tokens whatever their audience, like IAM's.

async function handleUserinfo(req, res, url) {
  let token = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
  if (!token && req.method === 'POST') token = (await readForm(req)).get('access_token') ?? '';
  if (!token) token = url.searchParams.get('access_token') ?? '';
  const deny = (error, description) => {
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer realm="${ISSUER}", error="${error}", error_description="${description}"`,
    });
    res.end(JSON.stringify({ error, error_description: description }));
  };
  if (!token) return deny('invalid_request', 'no access token provided');
  let payload;
  try {
    payload = await verifyOwnJwt(token);
  } catch {
    return deny('invalid_token', 'invalid or expired access token');
  }
  const user = usersBySub.get(payload.sub);
  const scope = String(payload.scope ?? '');
  if (!user || !scope.split(' ').includes('openid')) return deny('invalid_token', 'token has no openid scope');
  return send(res, 200, JSON.stringify(claimsForScope(user, scope)), 'application/json');
}

// ---------------------------------------------------------------------------------------------
// Admin: register or replace a client at runtime. Loopback only and behind a bearer token that
// only idp.py (and whoever can read the state dir) knows.

async function handleAdmin(req, res, url) {
  const given = Buffer.from(req.headers.authorization ?? '');
  const wanted = Buffer.from(`Bearer ${config.admin_token}`);
  if (given.length !== wanted.length || !crypto.timingSafeEqual(given, wanted)) {
    return send(res, 401, JSON.stringify({ error: 'unauthorized' }), 'application/json');
  }
  if (url.pathname === '/admin/clients' && req.method === 'POST') {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const metadata = JSON.parse(raw);
    try {
      await provider.Client.validate(metadata);
    } catch (err) {
      return send(res, 400, JSON.stringify({ error: err.error ?? 'invalid_client_metadata',
        error_description: err.error_description ?? err.message }), 'application/json');
    }
    await provider.Client.adapter.upsert(metadata.client_id, metadata);
    return send(res, 201, JSON.stringify({ client_id: metadata.client_id }), 'application/json');
  }
  if (url.pathname === '/admin/faults' && req.method === 'POST') {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const wanted = JSON.parse(raw || '{}');
    if (wanted.shape !== undefined && !Object.hasOwn(FAULT_SHAPES, wanted.shape)) {
      return send(res, 400, JSON.stringify({ error: 'unknown shape', shapes: Object.keys(FAULT_SHAPES) }),
        'application/json');
    }
    fault = wanted.shape === undefined ? null : wanted;
    return send(res, 200, JSON.stringify({ fault }), 'application/json');
  }
  if (url.pathname === '/admin/faults' && req.method === 'GET') {
    return send(res, 200, JSON.stringify({ fault, shapes: Object.keys(FAULT_SHAPES), echoed: [...echoed] }),
      'application/json');
  }
  if (url.pathname === '/admin/token-requests' && req.method === 'GET') {
    return send(res, 200, JSON.stringify({
      by_grant: Object.fromEntries(requestsByGrant), exchanges_by_sub: Object.fromEntries(exchangesBySub),
    }), 'application/json');
  }
  return send(res, 404, JSON.stringify({ error: 'not_found' }), 'application/json');
}

// ---------------------------------------------------------------------------------------------

const callback = provider.callback();
const server = https.createServer({
  key: fs.readFileSync(config.tls_key),
  cert: fs.readFileSync(config.tls_cert),
}, async (req, res) => {
  const url = new URL(req.url, ISSUER);
  try {
    if (url.pathname.startsWith('/interaction/')) return await handleInteraction(req, res, url);
    if (url.pathname === '/userinfo') return await handleUserinfo(req, res, url);
    if (url.pathname.startsWith('/admin/')) return await handleAdmin(req, res, url);
    if (url.pathname === '/healthz') return send(res, 200, 'ok', 'text/plain');
  } catch (err) {
    console.error(`${req.method} ${url.pathname}:`, err);
    if (!res.headersSent) {
      return send(res, err instanceof errors.OIDCProviderError ? err.statusCode : 500,
        page('Error', `<h1>${esc(err.error ?? 'server_error')}</h1><p>${esc(err.error_description ?? '')}</p>`));
    }
    return undefined;
  }
  return callback(req, res);
});

server.listen(config.port, config.host, () => {
  console.log(`idp listening on ${ISSUER} (users: ${users.length}, keys: ${path.basename(config.jwks_file)})`);
});

// Stop cleanly on TERM so the store file is never half-written.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
  process.on(sig, () => setTimeout(() => process.exit(0), 2000).unref());
}
