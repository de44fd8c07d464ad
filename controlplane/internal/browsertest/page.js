// page.js opens one page of a web UI in headless Chromium through
// playwright-core, waits until every given text shows, saves a full-page
// screenshot and prints the page's text and tables as JSON:
//
//   node page.js URL SCREENSHOT [CLICK_TEXT] -- WAIT_TEXT...
//
// PLAYWRIGHT_CORE is the playwright-core package's folder, CHROMIUM the
// browser's binary.
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

(async () => {
  const args = process.argv.slice(2);
  const sep = args.indexOf('--');
  const [url, shot, click] = args.slice(0, sep);
  const waitFor = args.slice(sep + 1);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1400 } });
    await page.goto(url, { waitUntil: 'load', timeout: 60000 }); // the UI polls: the network is never idle
    if (click) {
      await page.getByText(click, { exact: true }).first().click({ timeout: 30000 });
    }
    // Rendered Markdown may sit in frames of its own: look in every frame.
    const read = async () => {
      let text = '';
      const tables = [];
      for (const frame of page.frames()) {
        try {
          text += (await frame.innerText('body')) + '\n';
          tables.push(...await frame.$$eval('table', (ts) => ts.map((t) =>
            Array.from(t.querySelectorAll('tr')).map((r) =>
              Array.from(r.querySelectorAll('th,td')).map((c) => c.textContent.trim())))));
        } catch (_) { /* a frame that went away */ }
      }
      return { text, tables };
    };
    const deadline = Date.now() + 30000;
    let seen = await read();
    while (!waitFor.every((w) => seen.text.includes(w))) {
      if (Date.now() > deadline) {
        await page.screenshot({ path: shot, fullPage: true });
        throw new Error('waited 30 s for ' + waitFor.filter((w) => !seen.text.includes(w)).join(', ') + ' on ' + url);
      }
      await page.waitForTimeout(250);
      seen = await read();
    }
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(JSON.stringify(seen));
  } catch (e) {
    try { await browser.contexts()[0]?.pages()[0]?.screenshot({ path: shot, fullPage: true }); } catch (_) {}
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e.message); process.exit(1); });
