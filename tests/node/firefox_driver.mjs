// Drives one headless Firefox ESR over WebDriver BiDi (puppeteer-core, no browser download) for
// the interop tests. JSON lines on stdin: {id, op: "open", url} -> {id, ok, page};
// {id, op: "eval", page, expr} -> {id, ok, value}; {id, op: "close", page}. Errors come back as
// {id, ok: false, error}. Prefs: fake camera and microphone without prompts, host candidates on
// loopback, no mDNS obfuscation; `media.navigator.permission.fake` keeps Firefox from looking for
// a default-route address (there is none in the test's network namespace).
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const browser = await puppeteer.launch({
  browser: 'firefox',
  protocol: 'webDriverBiDi',
  executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
  headless: true,
  extraPrefsFirefox: {
    'media.navigator.streams.fake': true,
    'media.navigator.permission.disabled': true,
    'media.navigator.permission.fake': true,
    'media.peerconnection.ice.loopback': true,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
    'media.autoplay.default': 0,
    'media.autoplay.blocking_policy': 0,
  },
});

/** @type {Map<number, import('puppeteer-core').Page>} */
const pages = new Map();
let nextPage = 1;
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
send({ ready: true, version: await browser.version() });

async function handle(m) {
  switch (m.op) {
    case 'open': {
      const page = await browser.newPage();
      const id = nextPage++;
      pages.set(id, page);
      page.on('pageerror', (e) => send({ event: 'pageerror', page: id, error: String(e) }));
      await page.goto(m.url);
      return { page: id };
    }
    case 'eval':
      return { value: await pages.get(m.page).evaluate(m.expr) };
    case 'close':
      await pages.get(m.page)?.close();
      pages.delete(m.page);
      return {};
    default:
      throw new Error(`unknown op ${m.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const m = JSON.parse(line);
  if (m.op === 'quit') break;
  handle(m).then(
    (r) => send({ id: m.id, ok: true, ...r }),
    (e) => send({ id: m.id, ok: false, error: String(e?.stack ?? e) }),
  );
}
await browser.close();
