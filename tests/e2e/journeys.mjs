// Journeys across forwarden's sign-ins in a real browser (Debian chromium, playwright-core):
//   JOURNEY=sso: sign in at FIRST_URL, then open SECOND_URL (another registrable domain:
//     handed off, no visit to the provider), open the hand-off's accept URL again (refused),
//     sign out at FIRST_URL's host and open SECOND_URL again.
//   JOURNEY=step_up: sign in at FIRST_URL, then open SECOND_URL (a route asking for MFA: back
//     to the provider, sign in again, and in).
//   JOURNEY=chooser: open FIRST_URL (several providers: the chooser page), choose the second
//     provider with the keyboard alone (Tab, Enter), sign in, sign out, open FIRST_URL again:
//     the chooser offers the last choice first and focused; Enter signs in with it again.
// Environment: JOURNEY, FIRST_URL, SECOND_URL, USER (the button at the test provider), ISSUER,
// HOST_RULES (chromium --host-resolver-rules), ARTIFACTS. Prints one JSON line.
import { chromium } from 'playwright-core';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=${env('HOST_RULES')}`],
});
const seen = {};

// What the keyboard is on: the focused element's text.
const focused = (page) => page.evaluate(() => document.activeElement?.textContent?.trim() || '');

// The chooser, by keyboard alone. ISSUER is the provider chosen (the second one listed).
async function chooser(page, first, issuer) {
  await page.goto(first);
  seen.chooser_title = await page.title();
  seen.chooser_choices = await page.$$eval('nav[aria-label] a', (as) => as.map((a) => a.textContent.trim()));
  seen.focused_first = await focused(page);
  await page.screenshot({ path: `${env('ARTIFACTS')}/chooser.png`, fullPage: true });
  await page.keyboard.press('Tab');
  seen.focused_after_tab = await focused(page);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: 15000 });
  await page.click(`button[value="${env('USER')}"]`);
  await page.waitForURL(first, { timeout: 15000 });
  seen.first_text = await page.textContent('body');
  await page.goto(new URL('/oauth2/sign_out?rd=%2Foauth2%2Fuserinfo', first).href);
  await page.goto(first);
  seen.chooser_again_choices = await page.$$eval('nav[aria-label] a', (as) => as.map((a) => a.textContent.trim()));
  seen.focused_again = await focused(page);
  await page.keyboard.press('Enter');
  // The provider still has its session: straight back.
  await page.waitForURL(first, { timeout: 15000 });
  seen.again_text = await page.textContent('body');
}
// Every URL the browser requested during `action`.
async function visited(page, action) {
  const urls = [];
  const note = (r) => { if (r.isNavigationRequest()) urls.push(r.url()); };
  page.on('request', note);
  try { await action(); } finally { page.off('request', note); }
  return urls;
}
try {
  const page = await (await browser.newContext()).newPage();
  const first = env('FIRST_URL');
  const second = env('SECOND_URL');
  const issuer = env('ISSUER');
  if (process.env.JOURNEY === 'chooser') {
    await chooser(page, first, issuer);
    throw null;
  }
  await page.goto(first);
  await page.click(`button[value="${env('USER')}"]`);
  await page.waitForURL(first, { timeout: 15000 });
  seen.first_text = await page.textContent('body');
  const journey = env('JOURNEY');
  if (journey === 'sso') {
    const urls = await visited(page, async () => {
      await page.goto(second);
      await page.waitForURL(second, { timeout: 15000 });
    });
    seen.second_chain = urls;
    seen.second_text = await page.textContent('body');
    await page.screenshot({ path: `${env('ARTIFACTS')}/sso-second-domain.png`, fullPage: true });
    const accept = urls.find((u) => u.includes('/oauth2/handoff/accept?'));
    const replay = await page.goto(accept);
    seen.replay_status = replay.status();
    seen.replay_text = await page.textContent('body');
    // Sign out, back to a page that does not sign in again (the provider still has its own
    // session, and would answer a sign-in at once).
    const out = await page.goto(new URL('/oauth2/sign_out?rd=%2Foauth2%2Fuserinfo', first).href);
    seen.sign_out_status = out.status();
    seen.after_sign_out_chain = await visited(page, async () => {
      await page.goto(second);
      await page.waitForURL((u) => u.href.startsWith(issuer) || u.href === second, { timeout: 15000 });
    });
    seen.after_sign_out_url = page.url();
  } else if (journey === 'step_up') {
    const urls = await visited(page, async () => {
      await page.goto(second);
      await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: 15000 });
    });
    seen.step_up_chain = urls;
    await page.screenshot({ path: `${env('ARTIFACTS')}/step-up-provider.png`, fullPage: true });
    await page.click(`button[value="${env('USER')}"]`);
    await page.waitForURL(second, { timeout: 15000 });
    seen.second_text = await page.textContent('body');
    await page.goto(first);
    seen.first_again_url = page.url();
  }
} catch (e) {
  if (e !== null) seen.error = String(e).split('\n').slice(0, 6).join(' | ');
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen) + '\n');
