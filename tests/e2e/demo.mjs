// Walks through the demo (scripts/demo) in Debian's chromium, as a first-time visitor would:
// the app sends Alice to the sign-in page; back at the app she sees what the app was told about
// her, verified; /admin is forbidden with forwarden's page; sign-out ends at the provider and a
// new visit asks to sign in again. Environment: APP_URL, ARTIFACTS. Prints one JSON line.
import { chromium } from 'playwright-core';
import { shot } from './shot.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const app = env('APP_URL');
const shots = env('ARTIFACTS');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(app);
  seen.sign_in_url = page.url();
  seen.sign_in_text = await page.textContent('body');
  await shot(page, `${shots}/demo-1-sign-in.png`);
  await page.click('button[value="alice"]');
  await page.waitForURL(app, { timeout: 15000 });
  seen.app_text = await page.textContent('body');
  await shot(page, `${shots}/demo-2-app.png`);
  const admin = await page.goto(new URL('/admin/', app).toString());
  seen.admin_status = admin.status();
  seen.admin_text = await page.textContent('body');
  await shot(page, `${shots}/demo-3-forbidden.png`);
  await page.goto(new URL('/oauth2/sign_out', app).toString());
  seen.sign_out_url = page.url();
  await shot(page, `${shots}/demo-4-sign-out.png`);
  // oidc-provider asks to confirm the sign-out, then sends the browser back to the app, which
  // (signed out) sends it to the sign-in page again.
  const confirm = page.locator('button[name="logout"][value="yes"]');
  if (await confirm.count()) await confirm.click();
  await page.waitForLoadState('load');
  await page.waitForSelector('button[value="alice"]', { timeout: 15000 });
  seen.after_sign_out_url = page.url();
  await page.goto(app);
  seen.after_sign_out_visit = page.url();
  // Every other user the banner names, each in a browser of their own.
  seen.users = {};
  for (const user of ['bob', 'carol', 'dave']) {
    const p = await (await browser.newContext()).newPage();
    await p.goto(app);
    await p.click(`button[value="${user}"]`);
    try {
      await p.waitForURL(app, { timeout: 15000 });
    } catch (e) {
      seen.users[user] = { error: String(e).split('\n').slice(0, 6).join(' | '), url: p.url() };
      continue;
    }
    const text = await p.textContent('body');
    const admin = await p.goto(new URL('/admin/', app).toString());
    seen.users[user] = { text, admin_status: admin.status() };
    await shot(p, `${shots}/demo-5-${user}-admin.png`);
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen) + '\n');
