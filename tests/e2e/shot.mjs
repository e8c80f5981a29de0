// A full-page screenshot, tried up to three times: on a busy machine Chromium now and then
// answers "Protocol error (Page.captureScreenshot): Unable to capture screenshot" for a page it
// has rendered (seen once in the demo's walk, CI load). The third failure is thrown.
export async function shot(page, path) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.screenshot({ path, fullPage: true });
    } catch (e) {
      if (attempt >= 3) throw e;
      await new Promise((done) => setTimeout(done, 500 * attempt));
    }
  }
}
