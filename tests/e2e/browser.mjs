// Signs in with a real browser: Debian's chromium driven by playwright-core (never a downloaded
// browser). Environment: START_URL, USER (the button to press at the test provider),
// HOST_RULES (chromium --host-resolver-rules), ARTIFACTS (screenshot folder); optionally
// FORBIDDEN_URL (a page the user may not see), SIGN_OUT=1 (sign out afterwards and ask for
// START_URL again) and IGNORE_HTTPS_ERRORS=1 (a self-signed certificate).
// Prints one JSON line with what the browser saw.
import { chromium } from 'playwright-core';
import { shot } from './shot.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=${env('HOST_RULES')}`,
  ],
});
const result = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: process.env.IGNORE_HTTPS_ERRORS === '1' });
  const page = await context.newPage();
  const start = env('START_URL');
  await page.goto(start);
  result.provider_url = page.url();
  await page.click(`button[value="${env('USER')}"]`);
  await page.waitForURL(start, { timeout: 15000 });
  result.protected_url = page.url();
  result.protected_text = await page.textContent('body');
  await shot(page, `${env('ARTIFACTS')}/protected.png`);
  if (process.env.FORBIDDEN_URL) {
    const r = await page.goto(process.env.FORBIDDEN_URL);
    result.forbidden_status = r.status();
    result.forbidden_text = await page.textContent('body');
    await shot(page, `${env('ARTIFACTS')}/forbidden.png`);
  }
  if (process.env.SIGN_OUT === '1') {
    await page.goto(new URL('/oauth2/sign_out', start).href);
    result.signed_out_url = page.url();
    // The same page again: every URL the browser was sent through on its way.
    const again = await page.goto(start);
    const chain = [];
    for (let r = again.request(); r; r = r.redirectedFrom()) chain.unshift(r.url());
    result.after_sign_out_chain = chain;
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
