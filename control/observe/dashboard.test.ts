// The dashboard as a person sees it: the demo mesh runs, Debian's chromium
// (headless, driven by playwright-core) loads the control plane's page, and
// every workload and edge must show live numbers that move, in the tables and
// in the topology graph; the history charts fill; the edge whose backend fails
// and whose caller retries shows both sides; the policy panel shows the demo's
// policies; screenshots at 1280 and 1920 px are not blank.
/// <reference lib="dom" />
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
// eslint-disable-next-line no-restricted-imports -- an integration test: the dashboard over the running demo mesh
import { startDemo, type RunningDemo } from '../../demo/run.js';
// eslint-disable-next-line no-restricted-imports -- the demo's topology, which the page must show
import { NAMESPACE, RATINGS_FAILURE_SHARE, WORKLOADS } from '../../demo/topology.js';
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

/** Share of a percentage cell ("99.50%"), or NaN. */
const share = (text: string | null): number => Number((text ?? '').replace('%', '')) / 100;

/**
 * Whether a screenshot has something on it: decoded by the browser itself on
 * a canvas, the share of pixels that are not the page's background and how
 * many colours it has.
 */
async function inked(page: Page, png: Buffer): Promise<{ inked: number; colours: number; width: number }> {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext('2d')!;
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    const colours = new Set<number>();
    let ink = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      colours.add((r << 16) | (g << 8) | b);
      if (r + g + b < 600) ink += 1;
    }
    return { inked: ink / (data.length / 4), colours: colours.size, width: img.width };
  }, png.toString('base64'));
}

describe('dashboard in a browser', function () {
  this.timeout(180_000);
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
  });

  it('draws the topology: a node per workload and an arrow per call, with live numbers', async () => {
    for (const w of WORKLOADS) await page.locator(`#graph g.node[data-workload="${NAMESPACE}/${w.name}"]`).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#graph g.node').count(), WORKLOADS.length, 'no node but the workloads');
    for (const edge of EDGES) {
      await page.waitForFunction(
        (e) => [...document.querySelectorAll(`#graph g.edge[data-edge="${e}"] [data-field=rps]`)].some((t) => Number.parseFloat(t.textContent ?? '') > 0),
        edge,
        { timeout: 20_000 },
      );
      const label = (await page.locator(`#graph g.edge[data-edge="${edge}"] > text`).first().textContent()) ?? '';
      assert.match(label, /^(\d+(\.\d)?% of calls · )?\d+\.\d rps · \d+(\.\d)?%p99 \d+(\.\d+)? ms · mTLS$/, `${edge} label`);
    }
    // The canary: web's calls to api go to both versions, each arrow with its share.
    const canary = page.locator(`#graph g.edge[data-edge="${NAMESPACE}/web -> api.${NAMESPACE}"]`);
    assert.deepEqual((await canary.evaluateAll((gs) => gs.map((g) => (g as SVGGElement).dataset.target))).sort(), [`${NAMESPACE}/api`, `${NAMESPACE}/api-v2`]);
    const shares = await canary.evaluateAll((gs) => gs.map((g) => Number.parseFloat(g.querySelector('[data-field=share]')?.textContent ?? '')));
    assert.ok(shares.every((n) => n > 0 && n < 100), `split shares ${JSON.stringify(shares)}`);
    assert.ok(Math.abs(shares[0]! + shares[1]! - 100) < 0.5, `split shares add up to 100%: ${JSON.stringify(shares)}`);
  });

  it('shows what the caller saw and what the backend answered: ratings fails, api retries, api sees more success', async () => {
    const edge = `${NAMESPACE}/api -> ratings.${NAMESPACE}`;
    const row = page.locator(`tr[data-edge="${edge}"]`);
    await page.waitForFunction((e) => Number(document.querySelector(`tr[data-edge="${e}"] td[data-field=retries]`)?.textContent) > 0, edge, { timeout: 30_000 });
    const caller = share(await row.locator('td[data-field=success]').textContent());
    const backend = share(await row.locator('td[data-field=backend]').textContent());
    const retries = Number(await row.locator('td[data-field=retries]').textContent());
    console.log(`      ${edge}: caller saw ${caller}, ratings answered ${backend}, ${retries} retries in the window`);
    assert.ok(backend < 1 - RATINGS_FAILURE_SHARE / 2, `ratings answered ${backend}: it fails ${RATINGS_FAILURE_SHARE} of requests`);
    assert.ok(caller > backend, `caller ${caller} above backend ${backend}`);
    assert.ok(retries > 0);
    // The graph says so on the arrow too.
    const label = (await page.locator(`#graph g.edge[data-edge="${edge}"] [data-field=backend]`).textContent()) ?? '';
    assert.match(label, /^backend \d+(\.\d)?% · \d+ retries/);
  });

  it('keeps history: the selected workload and its edges get chart points every interval', async () => {
    // The page selects a workload that serves a service first (api); its charts fill as the store samples.
    await page.waitForFunction(() => {
      const chart = document.querySelector('#panel-history [data-chart=rps] svg');
      return chart !== null && Number((chart as SVGElement).dataset.points) >= 2;
    }, undefined, { timeout: 60_000 });
    assert.equal(await page.locator('#panel').getAttribute('data-workload'), `${NAMESPACE}/api`);
    const edgeCharts = await page.$$eval('#panel-history .charts[data-history*=" -> "] [data-chart=successRate] svg', (svgs) => svgs.map((s) => Number((s as SVGElement).dataset.points)));
    assert.ok(edgeCharts.length >= 2 && edgeCharts.every((n) => n >= 1), `edge charts' points: ${JSON.stringify(edgeCharts)}`);
    assert.ok((await page.locator('#panel-history [data-chart=rps] svg path').count()) >= 1, 'a line is drawn');
    const history = (await (await fetch(`http://${demo!.controlPlane.adminAddress}/api/v1/history?workload=${NAMESPACE}/ratings`)).json()) as { edges: Record<string, unknown[]>; points: number };
    assert.equal(history.points, 90);
    assert.deepEqual(Object.keys(history.edges).sort(), [`${NAMESPACE}/api -> ratings.${NAMESPACE}`, `${NAMESPACE}/api-v2 -> ratings.${NAMESPACE}`]);
    const bad = await fetch(`http://${demo!.controlPlane.adminAddress}/api/v1/history?workload=ratings`);
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /namespace\/name/);
  });

  it("shows the policies in force on the selected workload from the control plane's model", async () => {
    await page.locator('#policies [data-policy="api-canary"]').waitFor({ timeout: 15_000 });
    assert.ok(await page.locator('#policies [data-policy="ratings-resilience"]').count(), 'the policy of the service api calls');
    assert.match((await page.locator('#policies dd[data-field=routes]').first().textContent()) ?? '', /api-v2, weight 10/);
    await page.locator(`#graph g.node[data-workload="${NAMESPACE}/ratings"]`).click();
    await page.locator('#policies dd[data-field="AuthorizationPolicy ratings-callers"]').waitFor({ timeout: 15_000 });
    assert.match((await page.locator('#policies dd[data-field=mTLS]').textContent()) ?? '', /^STRICT \(mesh\)/);
    assert.match((await page.locator('#policies dd[data-field=retries]').textContent()) ?? '', /attempts 4/);
    await page.locator(`#graph g.node[data-workload="${NAMESPACE}/api"]`).click();
    await page.locator('#policies [data-policy="api-canary"]').waitFor({ timeout: 15_000 });
  });

  it("taps the selected workload live: its requests as its proxy sees them, from the control plane's tap stream", async () => {
    await page.locator('#tap [data-tap]').first().waitFor({ timeout: 20_000 });
    assert.match((await page.locator('#tap-state').textContent()) ?? '', /^live/);
    // api's proxy sees its calls out to ratings and web's calls in: the lines come as they happen, an inbound one soon.
    const inbound = /^in\s+ns\/demo\/sa\/web → \S+\s+GET\s+\/\S*\s+200\s/;
    const lines = (): Promise<string[]> => page.$$eval('#tap [data-tap]', (ds) => ds.map((d) => d.textContent ?? ''));
    const deadline = Date.now() + 20_000;
    while (!(await lines()).some((l) => inbound.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    const seen = await lines();
    assert.ok(seen.some((l) => inbound.test(l)), `tap lines of api: ${seen.slice(0, 3).join(' | ')}`);
  });

  it('renders at 1280 and 1920 px wide: screenshots that are not blank', async () => {
    for (const width of [1280, 1920]) {
      await page.setViewportSize({ width, height: 1000 });
      await page.waitForFunction(() => document.querySelectorAll('#graph g.node').length > 0);
      await new Promise((r) => setTimeout(r, 2500));
      const png = await page.screenshot({ fullPage: true });
      const path = join(tmpdir(), `tsmesh-dashboard-${width}-${Date.now()}.png`);
      writeFileSync(path, png);
      const seen = await inked(page, png);
      console.log(`      dashboard screenshot ${width} px: ${path} (${(seen.inked * 100).toFixed(1)}% inked, ${seen.colours} colours)`);
      assert.equal(seen.width, width);
      assert.ok(seen.inked > 0.02 && seen.colours > 50, `blank? ${JSON.stringify(seen)}`);
      // Nothing of the graph runs off its box.
      const overflow = await page.evaluate(() => {
        const svg = document.getElementById('graph')!;
        const box = svg.getBoundingClientRect();
        return [...svg.querySelectorAll('g.node')].filter((g) => {
          const r = g.getBoundingClientRect();
          return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1;
        }).length;
      });
      assert.equal(overflow, 0, 'nodes outside the graph');
    }
  });
});
