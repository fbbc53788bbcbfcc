// The dashboard as a person sees it: the demo mesh runs, Debian's chromium
// (headless, driven by playwright-core) loads the control plane's page, and
// every workload and edge must show live numbers that move.
/// <reference lib="dom" />
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
// eslint-disable-next-line no-restricted-imports -- an integration test: the dashboard over the running demo mesh
import { startDemo, type RunningDemo } from '../../demo/run.js';
// eslint-disable-next-line no-restricted-imports -- the demo's topology, which the page must show
import { NAMESPACE, WORKLOADS } from '../../demo/topology.js';
import { silentLogger } from '../../lib/log.js';

const CHROMIUM = process.env.TSMESH_CHROMIUM ?? '/usr/bin/chromium';

/** Every call of the demo's topology, as the page names edges. */
const EDGES = WORKLOADS.flatMap((w) => w.calls.map((svc) => `${NAMESPACE}/${w.name} -> ${svc}.${NAMESPACE}`));

/** The text of every numeric cell of the edges and workloads tables, by row and field. */
async function numbers(page: Page): Promise<Record<string, string>> {
  return page.$$eval('tr[data-edge] td.num, tr[data-workload] td.num', (cells) =>
    Object.fromEntries(
      cells.map((td) => {
        const row = td.parentElement!;
        return [`${row.dataset.edge ?? row.dataset.workload} ${td.dataset.field}`, td.textContent ?? ''];
      }),
    ),
  );
}

describe('dashboard in a browser', function () {
  this.timeout(120_000);
  let demo: RunningDemo | undefined;
  let browser: Browser | undefined;
  let page: Page;

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium; .ci/run does) or set TSMESH_CHROMIUM to a Chromium binary`);
    }
    // The mode npm start picks: as root, pods in network namespaces scraped at podIP:15020.
    demo = await startDemo({ log: silentLogger, rps: 30 });
    console.log(`      demo mode: ${demo.mode}`);
    // As root Chromium refuses to run sandboxed; the page is our own, on loopback.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://${demo.controlPlane.adminAddress}/`);
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it('shows every workload, its pods meshed and a certificate that expires in the future', async () => {
    for (const w of WORKLOADS) {
      const row = page.locator(`tr[data-workload="${NAMESPACE}/${w.name}"]`);
      await row.waitFor({ timeout: 20_000 });
      assert.equal(await row.locator('td[data-field=meshed]').textContent(), '1/1', `${w.name} meshed`);
      assert.match((await row.locator('td[data-field=cert]').textContent()) ?? '', /^in (\d+h )?\d+m$/, `${w.name} certificate`);
    }
    const states = await page.$$eval('tr[data-proxy] td[data-field=state]', (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(states, WORKLOADS.map(() => 'up'));
  });

  it('shows every edge over mTLS, with both identities and non-zero rates and latencies', async () => {
    for (const edge of EDGES) {
      const row = page.locator(`tr[data-edge="${edge}"]`);
      await row.waitFor({ timeout: 20_000 });
      // The first view has no rates (one scrape); wait for live ones.
      await page.waitForFunction((e) => {
        const rps = document.querySelector(`tr[data-edge="${e}"] td[data-field=rps]`)?.textContent;
        return rps !== undefined && rps !== null && Number(rps) > 0;
      }, edge, { timeout: 30_000 });
      const cells = Object.fromEntries(
        await row.locator('td[data-field]').evaluateAll((tds) => tds.map((td) => [(td as HTMLElement).dataset.field, td.textContent ?? ''])),
      ) as Record<string, string>;
      assert.equal(cells.security, 'mTLS', `${edge} security`);
      assert.match(cells.success!, /^\d+\.\d\d%$/, `${edge} success`);
      assert.match(cells.p50!, /^\d+(\.\d+)? ms$/, `${edge} p50`);
      assert.match(cells.p99!, /^\d+(\.\d+)? ms$/, `${edge} p99`);
      const caller = edge.split(' -> ')[0]!.split('/')[1]!;
      assert.ok(cells.identities!.startsWith(`ns/${NAMESPACE}/sa/${caller} → ns/${NAMESPACE}/sa/`), `${edge} identities: ${cells.identities}`);
    }
    // The canary's share is visible: web's calls to api are answered by both versions.
    assert.match(await page.locator(`tr[data-edge="${NAMESPACE}/web -> api.${NAMESPACE}"] td[data-field=identities]`).textContent() ?? '', /sa\/api, ns\/demo\/sa\/api-v2$/);
  });

  it('updates live: the numbers move between polls', async () => {
    const status = page.locator('#status');
    const first = await numbers(page);
    const firstStatus = await status.textContent();
    await page.waitForFunction((s) => document.querySelector('#status')?.textContent !== s, firstStatus, { timeout: 10_000 });
    // A further poll or two: with traffic flowing, some rate or latency differs.
    let changed: string[] = [];
    for (let i = 0; i < 10 && changed.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = await numbers(page);
      changed = Object.keys(now).filter((k) => now[k] !== first[k]);
    }
    assert.ok(changed.length > 0, `nothing changed in ${JSON.stringify(first)}`);
    assert.match((await status.textContent()) ?? '', /^updated .* · rates over the last \d+ s · 5 proxies$/);
    const screenshot = join(tmpdir(), `tsmesh-dashboard-${Date.now()}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`      dashboard screenshot: ${screenshot}`);
  });
});
