// A real OpenTelemetry Collector for the span-export tests: the binary that
// test/otelcol/build.sh builds (OTLP receiver, file exporter), started on a
// free loopback port with a config of its own in a temporary folder. What it
// received is read back from its file exporter's OTLP JSON lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const OTELCOL_BINARY = join(process.env.TSMESH_OTELCOL_CACHE ?? join(HERE, '.cache'), 'bin', 'otelcol');

/** Why the collector tier cannot run here, or undefined when it can. */
export function otelcolMissing(): string | undefined {
  if (existsSync(OTELCOL_BINARY)) return undefined;
  return `no OpenTelemetry Collector at ${OTELCOL_BINARY}: run bash test/otelcol/ensure.sh (needs Go)`;
}

/** One span as the file exporter writes it (OTLP JSON), with its resource's service.name. */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP SpanKind: 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  events: { name: string; attributes: Record<string, string | number | boolean> }[];
  status: { code?: number; message?: string };
  service: string;
}

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type OtlpAttribute = { key: string; value: OtlpValue };

function attributes(list: OtlpAttribute[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) out[key] = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.boolValue ?? value.doubleValue ?? '';
  return out;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class Collector {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    /** http://127.0.0.1:PORT/v1/traces */
    readonly url: string,
    private readonly output: () => string,
  ) {}

  /** Starts a collector and resolves once it says it is ready. */
  static async start(): Promise<Collector> {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-otelcol-'));
    const port = await freePort();
    const file = join(dir, 'spans.jsonl');
    writeFileSync(
      join(dir, 'config.yaml'),
      [
        'receivers:',
        '  otlp:',
        '    protocols:',
        '      http:',
        `        endpoint: 127.0.0.1:${port}`,
        'exporters:',
        '  file:',
        `    path: ${file}`,
        '    flush_interval: 50ms',
        'service:',
        '  telemetry:',
        '    metrics:',
        '      level: none',
        '  pipelines:',
        '    traces:',
        '      receivers: [otlp]',
        '      exporters: [file]',
        '',
      ].join('\n'),
    );
    const child = spawn(OTELCOL_BINARY, [`--config=file:${join(dir, 'config.yaml')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const collector = new Collector(child, dir, `http://127.0.0.1:${port}/v1/traces`, () => output);
    const deadline = Date.now() + 30_000;
    while (!output.includes('Everything is ready')) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await collector.stop();
        throw new Error(`the collector did not start:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return collector;
  }

  /** Every span received so far. */
  spans(): CollectedSpan[] {
    const file = join(this.dir, 'spans.jsonl');
    if (!existsSync(file)) return [];
    const out: CollectedSpan[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const doc = JSON.parse(line) as {
        resourceSpans: {
          resource?: { attributes?: OtlpAttribute[] };
          scopeSpans: { spans: (Omit<CollectedSpan, 'attributes' | 'events' | 'service'> & { attributes?: OtlpAttribute[]; events?: { name: string; attributes?: OtlpAttribute[] }[] })[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        const service = String(attributes(rs.resource?.attributes)['service.name'] ?? '');
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            out.push({ ...s, attributes: attributes(s.attributes), events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attributes(e.attributes) })), status: s.status ?? {}, service });
      }
    }
    return out;
  }

  /** Waits until `count` spans of `traceId` have arrived (at most `ms`). */
  async trace(traceId: string, count: number, ms = 15_000): Promise<CollectedSpan[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const spans = this.spans().filter((s) => s.traceId === traceId);
      if (spans.length >= count || Date.now() > deadline) return spans;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** What the collector printed (for a failing test's message). */
  log(): string {
    return this.output();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
