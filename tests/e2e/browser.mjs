// Signs in with a real browser: Debian's chromium driven by playwright-core (never a downloaded
// browser). Environment: START_URL, FORBIDDEN_URL, USER (the button to press at the test
// provider), HOST_RULES (chromium --host-resolver-rules), ARTIFACTS (screenshot folder).
// Prints one JSON line with what the browser saw.
import { chromium } from 'playwright-core';

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
  const page = await (await browser.newContext()).newPage();
  const start = env('START_URL');
  await page.goto(start);
  result.provider_url = page.url();
  await page.click(`button[value="${env('USER')}"]`);
  await page.waitForURL(start, { timeout: 15000 });
  result.protected_url = page.url();
  result.protected_text = await page.textContent('body');
  await page.screenshot({ path: `${env('ARTIFACTS')}/protected.png`, fullPage: true });
  const r = await page.goto(env('FORBIDDEN_URL'));
  result.forbidden_status = r.status();
  result.forbidden_text = await page.textContent('body');
  await page.screenshot({ path: `${env('ARTIFACTS')}/forbidden.png`, fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
