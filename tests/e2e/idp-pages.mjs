// The local identity provider's own pages, as a newcomer meets them (scripts/idp): its sign-in
// page, walked by keyboard alone (Tab to a user, Enter), and its sign-out question and
// "signed out" page. Environment: ISSUER, CLIENT_ID, REDIRECT_URI, ARTIFACTS (screenshots).
// Prints one JSON line with what the browser saw.
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import { shot } from './shot.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const verifier = crypto.randomBytes(32).toString('base64url');
  const auth = new URL(`${env('ISSUER')}/auth`);
  for (const [k, v] of Object.entries({
    client_id: env('CLIENT_ID'), response_type: 'code', scope: 'openid email', redirect_uri: env('REDIRECT_URI'),
    state: 'st', nonce: 'no', code_challenge_method: 'S256',
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
  })) auth.searchParams.set(k, v);
  // The callback's forwarden is not running: the browser's last request is enough.
  let callback = '';
  page.on('request', (r) => { if (r.url().startsWith(env('REDIRECT_URI'))) callback = r.url(); });
  await page.goto(auth.href);
  seen.sign_in_title = await page.title();
  seen.sign_in_heading = await page.textContent('h1');
  seen.users = await page.$$eval('button[name="user"]', (bs) => bs.map((b) => b.innerText.replace(/\s+/g, ' ').trim()));
  await shot(page, `${env('ARTIFACTS')}/idp-sign-in.png`);
  // Keyboard alone: the first Tab reaches the first user, Enter signs in as them.
  await page.keyboard.press('Tab');
  seen.focused = await page.evaluate(() => document.activeElement?.value);
  await Promise.all([page.waitForRequest((r) => r.url().startsWith(env('REDIRECT_URI'))), page.keyboard.press('Enter')]);
  seen.callback_has_code = new URL(callback).searchParams.has('code');
  // A new tab of the same browser (the first one is still failing to reach the callback).
  const out = await context.newPage();
  await out.goto(`${env('ISSUER')}/session/end`);
  seen.sign_out_heading = await out.textContent('h1');
  await shot(out, `${env('ARTIFACTS')}/idp-sign-out.png`);
  // The question's "yes" has the focus: Enter signs out.
  await Promise.all([out.waitForNavigation(), out.keyboard.press('Enter')]);
  seen.signed_out_heading = await out.textContent('h1');
  await shot(out, `${env('ARTIFACTS')}/idp-signed-out.png`);
} catch (e) {
  seen.error = String(e).split('\n').slice(0, 6).join(' | ');
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
