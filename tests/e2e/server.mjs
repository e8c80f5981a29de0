// The identity provider forwarden's tests (and the demo) run against: oidc-provider, set up to
// look like Entra ID. The issuer is http://127.0.0.1:PORT/<tenant-id>/v2.0 and ID tokens carry
// oid, tid, preferred_username, email, groups and roles.
//
//   PORT=0 CLIENT_ID=... CLIENT_SECRET=... REDIRECT_URIS=a,b node server.mjs
//
// Prints one JSON line {"issuer": ...} when listening. A test signs in without a browser by
// passing login_hint=<user> on the authorization request; without it a small form asks.
import crypto from 'node:crypto';
import http from 'node:http';

// oidc-provider 9 warns on any Node.js before 22 LTS; Debian's Node.js 20 runs these tests
// fine. Say that once, plainly, instead of its warning.
const warn = console.warn;
console.warn = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
  warn(...args);
};
const { default: Provider, errors } = await import('oidc-provider');
console.warn = warn;
if (Number(process.versions.node.split('.')[0]) < 22) {
  console.error(`test provider: Node.js ${process.versions.node}; oidc-provider prefers 22 LTS, and works on this one for these tests`);
}

const TENANT = process.env.TENANT || '72f988bf-86f1-41af-91ab-2d7cd011db47';
// A second directory, for multi-tenant (`organizations`) sign-in.
const TENANT2 = process.env.TENANT2 || '11111111-2222-4333-8444-555555555555';
const CLIENT_ID = process.env.CLIENT_ID || 'forwarden-test';
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'forwarden-test-secret-0123456789';
const REDIRECT_URIS = (process.env.REDIRECT_URIS || 'http://127.0.0.1/oauth2/callback').split(',');
const LOGOUT_URIS = (process.env.POST_LOGOUT_REDIRECT_URIS || REDIRECT_URIS.join(',')).split(',');
// CLIENT2_ID: a second app registration with the same redirect URIs whose sign-in is open only
// to the users in CLIENT2_USERS (Entra's "assignment required"; others get access_denied, as
// AADSTS50105 does).
const CLIENT2 = process.env.CLIENT2_ID
  ? { id: process.env.CLIENT2_ID, secret: process.env.CLIENT2_SECRET, users: (process.env.CLIENT2_USERS || '').split(',') }
  : undefined;

const guid = (n) => `${n.toString(16).padStart(8, '0')}-aaaa-4bbb-8ccc-${n.toString(16).padStart(12, '0')}`;

// The test users. `groups` are object ids, as `az ad group show --query id` prints them.
export const USERS = {
  alice: { oid: guid(1), name: 'Alice', email: 'alice@contoso.com', groups: [guid(1001)], roles: ['Reader', 'Admin'] },
  bob: { oid: guid(2), name: 'Bob', email: 'bob@contoso.com', groups: [guid(1002)], roles: ['Reader'] },
  // Carol's account cannot do MFA: a step-up for her is never granted.
  carol: { oid: guid(3), name: 'Carol', email: 'carol@contoso.com', groups: [], roles: [], noMfa: true },
  // A thousand groups (overage, from Graph): more than any cookie carries.
  frank: { oid: guid(8), name: 'Frank', email: 'frank@contoso.com', groups: Array.from({ length: 1000 }, (_, i) => guid(5001 + i)), roles: [], overage: true },
  // Of example.com, the domain the guides' policies allow.
  dana: { oid: guid(7), name: 'Dana', email: 'dana@example.com', groups: [], roles: [] },
  // More groups than fit in a token: the ID token says where to get them (overage).
  dave: { oid: guid(4), name: 'Dave', email: 'dave@contoso.com', groups: Array.from({ length: 250 }, (_, i) => guid(2001 + i)), roles: [], overage: true },
  // Of the second tenant. Erin is an ordinary user there; Mallory set her (unverified) email
  // to a contoso.com address: the nOAuth attack.
  erin: { oid: guid(5), name: 'Erin', email: 'erin@fabrikam.com', groups: [], roles: [], tenant: TENANT2 },
  mallory: { oid: guid(6), name: 'Mallory', email: 'alice@contoso.com', upn: 'mallory@fabrikam.com', unverified: true, groups: [], roles: [], tenant: TENANT2 },
};
const tenantOf = (id) => USERS[id]?.tenant || TENANT;

// API clients (client credentials), as Entra app registrations with their service principals'
// object ids and the app roles granted to them. Their tokens are for the API below.
export const API = 'api://forwarden-apps';
const OTHER_API = 'api://someone-else';
// The same API asking for Entra's v1 token shape (appid, upn, unique_name, ver 1.0; no azp).
// oidc-provider signs with its own issuer, so the v1 issuer (sts.windows.net) is left to the
// unit tests.
const API_V1 = 'api://forwarden-apps-v1';
export const APPS = {
  '11112222-3333-4444-5555-666677778888': { secret: 'caller-secret-0123456789abcdef', oid: guid(101), roles: ['Tasks.Write'] },
  '99998888-7777-4666-8555-444433332222': { secret: 'other-secret-0123456789abcdef', oid: guid(102), roles: [] },
};

let graphEndpoint = '';

// The API a `<application ID URI>/.default` scope names, if it is one of this provider's.
function defaultScopeResource(scope) {
  const named = (scope || '').split(' ').filter((s) => s.endsWith('/.default')).map((s) => s.slice(0, -'/.default'.length));
  return named.find((r) => [API, OTHER_API, API_V1].includes(r));
}

function claimsOf(id) {
  const u = USERS[id];
  if (u.overage) {
    const { groups, ...rest } = claimsOfPlain(id);
    return { ...rest, _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: graphEndpoint } } };
  }
  return claimsOfPlain(id);
}

function claimsOfPlain(id) {
  const u = USERS[id];
  return {
    sub: id,
    oid: u.oid,
    tid: tenantOf(id),
    name: u.name,
    preferred_username: u.upn || u.email,
    // Entra's optional claim, which its logout takes back as logout_hint.
    login_hint: `O.hint-${id}`,
    email: u.email,
    email_verified: !u.unverified,
    groups: u.groups,
    roles: u.roles,
  };
}

// The port opens first (the issuer names its number), then the keys are made and the providers
// set up: a request that arrives meanwhile waits for them instead of finding no handler.
let serve;
const handler = new Promise((resolve) => { serve = resolve; });
function listen(port) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => { handler.then((h) => h(req, res)); });
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// START_STEPS=1: each step of the start on stderr (the tests set it, to see where a start stopped).
const step = (what) => { if (process.env.START_STEPS) console.error(`start: ${what}`); };
step('listening');
const server = await listen(Number(process.env.PORT || 0));
step(`listening on ${server.address().port}`);
const origin = `http://127.0.0.1:${server.address().port}`;
const prefix = `/${TENANT}/v2.0`;
const issuer = `${origin}${prefix}`;
graphEndpoint = `${origin}/graph/v1.0/me/getMemberObjects`;

// A fresh RSA signing key with its own kid. Generated as PEM and imported anew before the JWK
// export: exporting the generated key object itself can deadlock in Node.js 20 (a garbage
// collection during the export finalizes the key generation job, whose destructor waits for
// the key's mutex that the export holds; gdb showed `~KeyGenJob` under `ExportJWKRsaKey`, the
// provider asleep for good with its port open: 10 starts in 25 runs of the test suite, none in the
// 7 runs after this change).
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = crypto.createPrivateKey(privateKey).export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

let keys = [signingKey()];
step('signing key made');
const makeProvider = (tenant = TENANT) => new Provider(`${origin}/${tenant}/v2.0`, {
  jwks: { keys },
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: REDIRECT_URIS,
    post_logout_redirect_uris: LOGOUT_URIS,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    // BACKCHANNEL_LOGOUT_URI: where a logout at this provider is posted (forwarden's
    // /oauth2/backchannel-logout), with the provider's session id in the ID token (sid).
    ...(process.env.BACKCHANNEL_LOGOUT_URI
      ? { backchannel_logout_uri: process.env.BACKCHANNEL_LOGOUT_URI, backchannel_logout_session_required: true }
      : {}),
  }, ...(CLIENT2 ? [{
    client_id: CLIENT2.id,
    client_secret: CLIENT2.secret,
    redirect_uris: REDIRECT_URIS,
    post_logout_redirect_uris: LOGOUT_URIS,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }] : []), ...Object.entries(APPS).map(([id, app]) => ({
    client_id: id,
    client_secret: app.secret,
    redirect_uris: [],
    response_types: [],
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_post',
  }))],
  claims: {
    // amr and acr as Entra's ID tokens carry them (how the user signed in).
    openid: ['sub', 'oid', 'tid', 'name', 'preferred_username', 'groups', 'roles', 'login_hint', 'amr', 'acr'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    // Asked for with the claims parameter (Entra's Conditional Access authentication contexts).
    acrs: null,
  },
  // The step-up levels: a second factor ('mfa'), and a named class.
  acrValues: ['pwd', 'mfa', 'urn:forwarden:test:gold'],
  conformIdTokenClaims: false,
  findAccount: (ctx, id) => (USERS[id] && !disabled.has(id) && tenantOf(id) === tenant
    ? {
      accountId: id,
      // Entra's `acrs`: the authentication contexts asked for (claims parameter), granted
      // when the user could do the second factor.
      claims: (use, scope, requested) => {
        const asked = requested?.acrs;
        const contexts = asked ? (asked.values || (asked.value ? [asked.value] : [])) : [];
        return contexts.length && !USERS[id].noMfa ? { ...claimsOf(id), acrs: contexts } : claimsOf(id);
      },
    }
    : undefined),
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
    // Its own sign-out pages (the question, then "signed out" when no app asked to come back).
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `<h1>Sign out?</h1><p class="lead">You are signed in at the test identity provider. Sign out here too?</p>${form}<div class="row"><button class="primary" autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button><button type="submit" form="op.logoutForm">No, stay signed in</button></div>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<h1>Signed out</h1><p class="lead">You are signed out of the test identity provider. You can close this page.</p>');
      },
    },
    clientCredentials: { enabled: true },
    backchannelLogout: { enabled: true },
    // Access tokens for the API are JWTs (RFC 9068), shaped like Entra's v2 tokens below.
    resourceIndicators: {
      enabled: true,
      // Entra's form of the request: `scope=<application ID URI>/.default` names the API, no
      // `resource` parameter (the guide's command, docs/api-clients.md).
      defaultResource: (ctx, client, oneOf) => oneOf || defaultScopeResource(ctx.oidc.params.scope),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        // OTHER_API: another API's tokens, which forwarden must refuse.
        if (![API, OTHER_API, API_V1].includes(resource)) throw new errors.InvalidTarget();
        return { scope: `Tasks.Read Files.Read ${resource}/.default`, audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: 3600 };
      },
    },
  },
  // Entra's claims in access tokens: tid, oid, azp (the calling app), idtyp, and scp for a
  // user's (delegated) token or the app's roles for its own.
  extraTokenClaims: (ctx, token) => {
    const v1 = token.resourceServer?.audience === API_V1;
    const base = v1 ? { tid: tenant, appid: token.clientId, ver: '1.0' } : { tid: tenant, azp: token.clientId, ver: '2.0' };
    if (!token.accountId) {
      const app = APPS[token.clientId] || { roles: [] };
      return { ...base, idtyp: 'app', oid: app.oid, roles: app.roles };
    }
    const u = USERS[token.accountId];
    const name = v1 ? { upn: u.upn || u.email, unique_name: u.upn || u.email } : { preferred_username: u.upn || u.email };
    return { ...base, idtyp: 'user', oid: u.oid, scp: token.scope, ...name, name: u.name, roles: u.roles };
  },
  interactions: { url: (ctx, interaction) => `/${tenant}/v2.0/interaction/${interaction.uid}` },
  issueRefreshToken: (ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  cookies: { keys: ['forwarden-test-idp-cookie-key'] },
  // Everything here is on loopback, which oidc-provider's outgoing requests (back-channel
  // logout) refuse by default as a guard against request forgery: allow it for the tests.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  pkce: { required: () => true },
});
// Replaced whole by /__test/rotate: new signing keys (and, as after a restart, no sessions).
let provider = makeProvider();
// Back-channel logout outcomes, in the test log.
const backchannelLog = (p) => {
  p.on('backchannel.success', (...args) => console.error(`backchannel logout sent: ${args.filter((a) => typeof a === 'string').join(' ')}`));
  p.on('backchannel.error', (...args) => console.error(`backchannel logout failed: ${args.map((a) => (a?.message ? `${a.message} ${a.cause?.message || ''}` : '') || a?.clientId || (typeof a === 'string' ? a : '')).filter(Boolean).join(' | ')}`));
};
backchannelLog(provider);
let provider2 = makeProvider(TENANT2);

// The provider's pages (sign-in, sign-out, signed out): styled like forwarden's own pages, and
// usable by keyboard and screen reader (one labelled button per user).
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)} · test identity provider</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f3f4f6;color:#1f2937;margin:0}
main{max-width:34rem;margin:3rem auto;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15);padding:2rem}
h1{font-size:1.4rem;margin:0 0 .25rem}p.lead{color:#4b5563;margin:.25rem 0 1.25rem}
.users{display:grid;gap:.5rem;margin:0;padding:0;list-style:none}
button{font:inherit;text-align:left;width:100%;padding:.6rem .8rem;border:1px solid #d1d5db;border-radius:.375rem;background:#fff;cursor:pointer}
button:hover,button:focus-visible{border-color:#2563eb;outline:2px solid #2563eb;outline-offset:1px}
button strong{display:block}button span{color:#4b5563;font-size:.9rem}
.primary{background:#2563eb;color:#fff;border-color:#2563eb;text-align:center}.row{display:flex;gap:.5rem}
footer{color:#6b7280;font-size:.85rem;margin-top:1.5rem}
</style></head><body><main>${body}<footer>A test identity provider shaped like an Entra ID tenant (oidc-provider), for trying forwarden on one machine. No passwords: never use it for real users.</footer></main></body></html>`;

// What a user is for, on the sign-in page.
function about(id) {
  const u = USERS[id];
  const parts = [u.email];
  if (u.tenant) parts.push('another tenant');
  if (u.unverified) parts.push('unverified email (the nOAuth attack)');
  if (u.overage) parts.push(`${u.groups.length} groups (overage: read from Graph)`);
  else if (u.groups.length) parts.push(`${u.groups.length} group${u.groups.length > 1 ? 's' : ''}`);
  if (u.roles.length) parts.push(`roles ${u.roles.join(', ')}`);
  return parts.join(' · ');
}

async function finish(provider, req, res, accountId) {
  const details = await provider.interactionDetails(req, res);
  if (CLIENT2 && details.params.client_id === CLIENT2.id && !CLIENT2.users.includes(accountId)) {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'AADSTS50105: the user is not assigned to a role for this application.' }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  if (details.params.resource) grant.addResourceScope(details.params.resource, details.params.scope);
  if (details.params.claims) grant.addOIDCClaims(Object.keys(JSON.parse(details.params.claims).id_token || {}));
  const grantId = await grant.save();
  // A step-up (a fresh sign-in: max_age=0, which oidc-provider turns into prompt=login;
  // acr_values; or authentication contexts): the second factor, unless the user cannot do it.
  const p = details.params;
  const fresh = (p.prompt || '').split(' ').includes('login') || p.max_age === 0 || p.max_age === '0';
  const stepUp = fresh || p.acr_values || (p.claims || '').includes('acrs');
  const mfa = stepUp && !USERS[accountId].noMfa;
  const acr = mfa ? ((p.acr_values || '').split(' ').find((a) => a && a !== 'pwd') || 'mfa') : 'pwd';
  await provider.interactionFinished(req, res, { login: { accountId, amr: mfa ? ['pwd', 'mfa'] : ['pwd'], acr }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

async function interaction(provider, base, req, res, path) {
  const uid = path.split('/')[2];
  if (req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    const user = new URLSearchParams(body).get('user');
    if (!USERS[user]) { res.writeHead(400); res.end('unknown user'); return; }
    await finish(provider, req, res, user);
    return;
  }
  const details = await provider.interactionDetails(req, res);
  const hint = details.params.login_hint;
  if (hint && disabled.has(hint)) {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The account is disabled.' }, { mergeWithLastSubmission: false });
    return;
  }
  if (hint && USERS[hint]) { await finish(provider, req, res, hint); return; }
  const options = Object.keys(USERS)
    .map((u) => `<li><button name="user" value="${u}"><strong>${esc(USERS[u].name)}</strong><span>${esc(about(u))}</span></button></li>`)
    .join('');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page('Sign in', `<h1>Sign in</h1><p class="lead">Choose who you are.</p><form method="post" action="${base}/interaction/${uid}"><ul class="users" aria-label="Test users">${options}</ul></form>`));
}

// A fake Microsoft Graph: POST /graph/v1.0/me/getMemberObjects with the user's access token.
async function graph(req, res) {
  const json = (status, body) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
  if (req.method !== 'POST' || !req.url.startsWith('/graph/v1.0/me/getMemberObjects')) return json(404, { error: { code: 'NotFound' } });
  const auth = req.headers.authorization || '';
  const token = auth.startsWith('Bearer ') ? await provider.AccessToken.find(auth.slice(7)) : undefined;
  if (!token) return json(401, { error: { code: 'InvalidAuthenticationToken' } });
  const user = USERS[token.accountId];
  return json(200, { value: user ? user.groups : [] });
}

// Entra grants offline_access without prompt=consent; oidc-provider follows the OIDC default and
// drops it. Ask for consent (granted at once by the interaction above) to behave like Entra.
function entraLike(path) {
  if (!path.startsWith('/auth?')) return path;
  const u = new URL(path, 'http://x');
  if ((u.searchParams.get('scope') || '').split(' ').includes('offline_access') && !u.searchParams.has('prompt')) {
    u.searchParams.set('prompt', 'consent');
  }
  // Entra asks again for a claims challenge (Conditional Access) or acr_values: the user signs
  // in again at this provider too, instead of reusing its session.
  if (u.searchParams.has('acr_values') || (u.searchParams.get('claims') || '').includes('acrs')) {
    const prompts = new Set((u.searchParams.get('prompt') || '').split(' ').filter(Boolean));
    prompts.add('login');
    u.searchParams.set('prompt', [...prompts].join(' '));
  }
  return u.pathname + u.search;
}

// Test controls: disable a user (sign-in and refresh then fail, as for a disabled account).
const disabled = new Set();

let callback = provider.callback();
let callback2 = provider2.callback();

// The multi-tenant authority, as Entra's `organizations`: its discovery publishes the issuer
// template with {tenantid}; sign-in goes to the user's tenant (chosen by login_hint here) and
// the code is redeemed at the tenant that issued it. Keys are shared, as Entra's are.
const ORGS = '/organizations/v2.0';
async function organizations(req, res) {
  const path = req.url.slice(ORGS.length);
  if (path.startsWith('/.well-known/openid-configuration')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      issuer: `${origin}/{tenantid}/v2.0`,
      authorization_endpoint: `${origin}${ORGS}/auth`,
      token_endpoint: `${origin}${ORGS}/token`,
      jwks_uri: `${origin}${prefix}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
    }));
    return;
  }
  if (path.startsWith('/auth?')) {
    const q = new URL(path, origin).search;
    const hint = new URL(path, origin).searchParams.get('login_hint');
    res.writeHead(303, { location: `/${tenantOf(hint)}/v2.0/auth${q}` });
    res.end();
    return;
  }
  if (path === '/token' && req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    const code = new URLSearchParams(body).get('code') || '';
    const t2 = await provider2.AuthorizationCode.find(code).catch(() => undefined);
    const r = await fetch(`${origin}/${t2 ? TENANT2 : TENANT}/v2.0/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body,
    });
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(await r.text());
    return;
  }
  res.writeHead(404); res.end();
}
// Test control: the token endpoint answers this many milliseconds late (/__test/slow-token?ms=).
let tokenDelay = 0;
// Test control: the next `count` token requests fail with this status (/__test/fail-token?status=&count=).
let tokenFailures = { status: 0, count: 0 };

// Every token endpoint answer, for the test that searches forwarden's logs for tokens.
const issued = [];
function recordTokens(res) {
  const chunks = [];
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  res.write = (c, ...rest) => { if (c) chunks.push(Buffer.from(c)); return write(c, ...rest); };
  res.end = (c, ...rest) => {
    if (c && typeof c !== 'function') chunks.push(Buffer.from(c));
    try { issued.push(JSON.parse(Buffer.concat(chunks).toString())); } catch { /* not JSON */ }
    return end(c, ...rest);
  };
}

step('providers set up');
serve(async (req, res) => {
  try {
    if (req.url.startsWith('/graph/')) { await graph(req, res); return; }
    if (req.url === '/__test/tokens') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(issued));
      return;
    }
    if (req.url.startsWith('/__test/slow-token?')) {
      tokenDelay = Number(new URL(req.url, origin).searchParams.get('ms') || 0);
      res.writeHead(204); res.end(); return;
    }
    if (req.url.startsWith('/__test/fail-token?')) {
      const q = new URL(req.url, origin).searchParams;
      tokenFailures = { status: Number(q.get('status') || 503), count: Number(q.get('count') || 1) };
      res.writeHead(204); res.end(); return;
    }
    if (req.url.split('?')[0].endsWith('/token') && tokenFailures.count > 0) {
      tokenFailures.count -= 1;
      res.writeHead(tokenFailures.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'temporarily_unavailable' }));
      return;
    }
    if (req.url.split('?')[0].endsWith('/token')) {
      recordTokens(res);
      if (tokenDelay) await new Promise((r) => setTimeout(r, tokenDelay));
    }
    if (req.url === '/__test/rotate') {
      keys = [signingKey()];
      provider = makeProvider();
      callback = provider.callback();
      provider2 = makeProvider(TENANT2);
      callback2 = provider2.callback();
      res.writeHead(204); res.end(); return;
    }
    if (req.url.startsWith('/__test/disable?')) {
      disabled.add(new URL(req.url, origin).searchParams.get('user'));
      res.writeHead(204); res.end(); return;
    }
    if (req.url.startsWith(ORGS)) { await organizations(req, res); return; }
    const prefix2 = `/${TENANT2}/v2.0`;
    const second = req.url.startsWith(prefix2);
    if (!req.url.startsWith(prefix) && !second) { res.writeHead(404); res.end(); return; }
    const base = second ? prefix2 : prefix;
    const path = req.url.slice(base.length) || '/';
    const p = second ? provider2 : provider;
    if (path.startsWith('/interaction/')) {
      req.originalUrl = req.url;
      req.url = path;
      await interaction(p, base, req, res, path.split('?')[0]);
      return;
    }
    if (path.startsWith('/auth?')) {
      // A disabled account is refused the way providers report it: back to the client with
      // error=access_denied.
      const q = new URL(path, origin).searchParams;
      if (disabled.has(q.get('login_hint'))) {
        const back = new URL(q.get('redirect_uri'));
        back.searchParams.set('error', 'access_denied');
        back.searchParams.set('error_description', 'The account is disabled.');
        back.searchParams.set('state', q.get('state') || '');
        res.writeHead(303, { location: back.toString() });
        res.end();
        return;
      }
    }
    req.url = entraLike(path);
    req.originalUrl = base + req.url;
    (second ? callback2 : callback)(req, res);
  } catch (e) {
    res.writeHead(500);
    res.end(String(e));
  }
});

process.stdout.write(JSON.stringify({ issuer, port: server.address().port }) + '\n');
