// Drives the system Chromium (headless) for the dashboard tests, one JSON
// command a line on stdin, one JSON answer a line on stdout:
//   {"op":"open","url":U}                      navigate
//   {"op":"wait","js":EXPR,"timeout_ms":N}     until EXPR is truthy; answers its value
//   {"op":"eval","js":EXPR}                    answers EXPR's value
//   {"op":"screenshot","path":P}               full page PNG
//   {"op":"close"}
// The first answer, unasked, gives the browser's PID. Every answer carries "problems": page errors, console errors and failed
// requests seen since the last answer, so the test can insist on none.
//   node drive.mjs '{"chromium":PATH,"profile":DIR,"width":W,"height":H}'
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';

const spec = JSON.parse(process.argv[2]);
const browser = await puppeteer.launch({
  executablePath: spec.chromium,
  headless: true,
  userDataDir: spec.profile,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  defaultViewport: { width: spec.width || 1400, height: spec.height || 1000 },
});
const page = await browser.newPage();
let problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('console', (m) => {
  // an HTTP error status is reported by the 'response' handler with its URL
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource: the server'))
    problems.push('console error: ' + m.text());
});
page.on('response', (r) => {
  if (r.status() >= 400) problems.push('http ' + r.status() + ' ' + r.url());
});
page.on('requestfailed', (r) => problems.push('request failed: ' + r.url() + ' ' +
  (r.failure() ? r.failure().errorText : '')));

function answer(obj) {
  obj.problems = problems;
  problems = [];
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const ops = {
  async open(c) {
    const r = await page.goto(c.url, { waitUntil: 'load', timeout: c.timeout_ms || 30000 });
    return { status: r ? r.status() : null };
  },
  async wait(c) {
    const h = await page.waitForFunction(c.js, { timeout: c.timeout_ms || 10000, polling: 50 });
    return { value: await h.jsonValue() };
  },
  async eval(c) {
    return { value: await page.evaluate(c.js) };
  },
  async screenshot(c) {
    await page.screenshot({ path: c.path, fullPage: true });
    return {};
  },
};

// The first line names the browser's PID: the test stops it by PID should
// this driver die without closing it.
answer({ ok: true, browser_pid: browser.process().pid });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  if (c.op === 'close') break;
  try {
    const f = ops[c.op];
    if (!f) throw new Error('unknown op ' + c.op);
    answer(Object.assign({ ok: true }, await f(c)));
  } catch (e) {
    let body = '';
    try { body = await page.evaluate(() => document.body.innerText.slice(0, 3000)); } catch (e2) { }
    answer({ ok: false, error: String(e && e.message || e), text: body });
  }
}
await browser.close();
