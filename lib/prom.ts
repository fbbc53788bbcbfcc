// prom-client's Registry, Counter, Gauge and Histogram, each loaded from its
// own file. The package's index also loads the Pushgateway (node:http,
// node:https), Summary (tdigest), the default process metrics (perf_hooks)
// and the cluster aggregator: 11 MB of RSS in a process that uses none of
// them, which for the sidecar is a fifth of its memory. The classes are the
// same objects the index exports (one module cache), so a Registry made
// from either works with metrics made from the other.
import { createRequire } from 'node:module';
import type * as prom from 'prom-client';

const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof prom.Registry;
export type Registry = prom.Registry;
export const Counter = require('prom-client/lib/counter') as typeof prom.Counter;
export type Counter<T extends string = string> = prom.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof prom.Gauge;
export type Gauge<T extends string = string> = prom.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof prom.Histogram;
export type Histogram<T extends string = string> = prom.Histogram<T>;
