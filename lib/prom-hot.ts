// A counter and a histogram for the request path, registered in a prom-client
// Registry and exposed by it like its own (the same text, byte for byte).
// prom-client checks and hashes the label object on every inc() and observe(),
// even through a child from labels(); on the proxy's request path that was 4%
// of its CPU. Here labels() checks and keys the label set once and returns a
// child that holds its own numbers: inc() adds, observe() finds a bucket.
// Only what the proxy uses is here: no exemplars, no timers, no collect().
import type { Registry } from './prom.js';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type LabelValues<T extends string> = Record<T, string | number>;

interface Value {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface MetricData {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: Value[];
  aggregator: 'sum';
}

interface Options<T extends string> {
  name: string;
  help: string;
  labelNames: readonly T[];
  registers: readonly Registry[];
}

abstract class Labelled<T extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly T[];
  readonly aggregator = 'sum';
  private readonly children = new Map<string, { labels: LabelValues<T>; child: C }>();

  constructor(o: Options<T>) {
    if (!METRIC_NAME.test(o.name)) throw new Error(`metric name ${JSON.stringify(o.name)} is not a Prometheus metric name`);
    for (const l of o.labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`metric ${o.name}: label name ${JSON.stringify(l)} is not a Prometheus label name`);
    }
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames;
    // prom-client's Registry takes any object with a name and get().
    for (const r of o.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected abstract newChild(): C;

  /** The child for these label values: checked and keyed here, once per call; keep it to count many times. */
  labels(values: LabelValues<T>): C {
    let key = '';
    for (const n of this.labelNames) {
      const v = values[n] as unknown;
      if (typeof v !== 'string' && typeof v !== 'number') throw new Error(`metric ${this.name}: label ${n} is ${v === undefined ? 'missing' : `a ${typeof v}`}; give a string or a number`);
      key += `${v}\u0000`;
    }
    for (const n in values) if (!this.labelNames.includes(n)) throw new Error(`metric ${this.name} has no label ${JSON.stringify(n)} (its labels: ${this.labelNames.join(', ')})`);
    let entry = this.children.get(key);
    if (!entry) {
      const labels = {} as LabelValues<T>;
      for (const n of this.labelNames) labels[n] = values[n];
      entry = { labels, child: this.newChild() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  protected entries(): IterableIterator<{ labels: LabelValues<T>; child: C }> {
    return this.children.values();
  }

  reset(): void {
    this.children.clear();
  }
}

export interface CounterChild {
  value: number;
  inc(by?: number): void;
}

class CounterCell implements CounterChild {
  value = 0;
  inc(by = 1): void {
    if (!(by >= 0) || by === Infinity) throw new Error(`a counter only goes up by a finite amount; got ${by}`);
    this.value += by;
  }
}

export class HotCounter<T extends string> extends Labelled<T, CounterChild> {
  readonly type = 'counter';

  protected newChild(): CounterChild {
    return new CounterCell();
  }

  get(): Promise<MetricData> {
    const values: Value[] = [];
    for (const { labels, child } of this.entries()) values.push({ value: child.value, labels: { ...labels } });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}

export interface HistogramChild {
  observe(value: number): void;
}

class HistogramCell implements HistogramChild {
  /** Observations per bucket, not cumulative; the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (Number.isNaN(value)) throw new Error('a histogram cannot observe NaN');
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class HotHistogram<T extends string> extends Labelled<T, HistogramChild> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;

  constructor(o: Options<T> & { buckets: readonly number[] }) {
    if ((o.labelNames as readonly string[]).includes('le')) throw new Error(`metric ${o.name}: le is the histogram's own label`);
    super(o);
    for (let i = 1; i < o.buckets.length; i++) {
      if (!(o.buckets[i]! > o.buckets[i - 1]!)) throw new Error(`metric ${o.name}: buckets must increase; ${o.buckets[i]} follows ${o.buckets[i - 1]}`);
    }
    this.bounds = Float64Array.from(o.buckets);
  }

  protected newChild(): HistogramChild {
    return new HistogramCell(this.bounds);
  }

  /** What the Registry formats: as prom-client's Histogram gives it, le first. */
  getForPromString(): Promise<MetricData> {
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, child } of this.entries()) {
      const cell = child as HistogramCell;
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += cell.counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: labels, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: labels, value: cell.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  async get(): Promise<MetricData> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return data;
  }
}
