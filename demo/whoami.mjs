// The demo's upstream app: it has no login of its own and shows what forwarden told it about
// the user, through nginx. It also checks the signed identity (X-Forwarden-Jwt) against
// forwarden's /.well-known/jwks.json, as an upstream that trusts no header on its own would.
//
//   PORT=8081 FORWARDEN_URL=http://127.0.0.1:4180 node demo/whoami.mjs
import crypto from 'node:crypto';
import http from 'node:http';

const PORT = Number(process.env.PORT || 8081);
const FORWARDEN_URL = process.env.FORWARDEN_URL || 'http://127.0.0.1:4180';

let jwks = null;
async function keys() {
  if (!jwks) jwks = (await (await fetch(`${FORWARDEN_URL}/.well-known/jwks.json`)).json()).keys;
  return jwks;
}

const b64 = (s) => Buffer.from(s, 'base64url');

// Verify an ES256 JWT: signature with the published key, audience = this host, not expired.
async function verify(token, host) {
  if (!token) return { ok: false, why: 'no X-Forwarden-Jwt header' };
  const [h, p, sig] = token.split('.');
  const header = JSON.parse(b64(h));
  const claims = JSON.parse(b64(p));
  const jwk = (await keys()).find((k) => k.kid === header.kid);
  if (!jwk || header.alg !== 'ES256') return { ok: false, why: 'unknown key' };
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const good = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, b64(sig));
  if (!good) return { ok: false, why: 'bad signature' };
  if (claims.aud !== host) return { ok: false, why: `audience ${claims.aud} is not ${host}` };
  if (claims.exp <= Date.now() / 1000) return { ok: false, why: 'expired' };
  return { ok: true, claims };
}

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Identity headers of a user in many groups are large (dave's 250 group ids and the signed
// identity are about 20 KB): more than Node's default 16 KiB of request headers.
http.createServer({ maxHeaderSize: 64 * 1024 }, async (req, res) => {
  const h = req.headers;
  const user = h['x-auth-request-email'] || h['x-auth-request-user'];
  const rows = ['x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username',
    'x-auth-request-groups', 'x-auth-request-roles', 'x-auth-request-client-id']
    .map((n) => `<tr><th>${n}</th><td><code>${esc(h[n] || '')}</code></td></tr>`).join('');
  let jwt;
  try {
    jwt = await verify(h['x-forwarden-jwt'], h.host);
  } catch (e) {
    jwt = { ok: false, why: String(e) };
  }
  const signed = jwt.ok
    ? `<p id="jwt">Signed identity: <strong>verified</strong> with forwarden's JWKS (subject <code>${esc(jwt.claims.sub)}</code>, valid until ${new Date(jwt.claims.exp * 1000).toISOString()}).</p>`
    : `<p id="jwt">Signed identity: <strong>none</strong> (${esc(jwt.why)}).</p>`;
  const title = req.url.startsWith('/public') ? 'A public page' : req.url.startsWith('/admin') ? 'The admin page' : 'The app';
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>whoami: ${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
th{text-align:left;padding-right:1rem;font-weight:normal;color:#555}td code{word-break:break-all}</style></head><body>
<h1>${esc(title)}</h1>
<p id="who">${user ? `Hello, <strong>${esc(user)}</strong>.` : 'Nobody is signed in (this page is public).'}</p>
<p>This app has no login of its own. nginx asked forwarden whether <code>${esc(req.method)} ${esc(req.url)}</code> may pass, and passed on who you are:</p>
<table>${rows}</table>
${signed}
<ul>
<li><a href="/">The app</a> (anyone of contoso.com)</li>
<li><a href="/admin/">/admin</a> (only Bob's group: as Alice you see forwarden's 403 page)</li>
<li><a href="/public/">/public</a> (no sign-in)</li>
<li><a href="/oauth2/userinfo">/oauth2/userinfo</a> (your session, as JSON)</li>
<li><a id="sign-out" href="/oauth2/sign_out">Sign out</a></li>
<li><a id="sign-out-everywhere" href="/oauth2/sign_out?everywhere=1">Sign out everywhere</a> (with sessions on Redis, <code>DEMO_REDIS=1 scripts/demo</code>: every browser you signed in with)</li>
</ul></body></html>`);
}).listen(PORT, '127.0.0.1');
