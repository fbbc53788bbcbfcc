// Checking untrusted documents field by field: each helper takes the value
// and its path, and throws a ValidationError that names the path and says
// what was expected, e.g. `services[1].ports[0].port: 70000 is not a port (1-65535)`.
import { isIP } from 'node:net';
import { parseDuration } from './duration.js';

export class ValidationError extends Error {
  override name = 'ValidationError';
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path || 'config'}: ${detail}`);
  }
}

export type Obj = Record<string, unknown>;

export function object(v: unknown, path: string, fields: readonly string[]): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ValidationError(path, `expected an object, found ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) throw new ValidationError(join(path, k), `unknown field; expected one of ${fields.join(', ')}`);
  }
  return v as Obj;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v) : typeof v;
}

export const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);

export function list<T>(v: unknown, path: string, item: (x: unknown, p: string) => T, optional = true): T[] {
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) throw new ValidationError(path, `expected a list, found ${describe(v)}`);
  return v.map((x, i) => item(x, `${path}[${i}]`));
}

export function string(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new ValidationError(path, `expected a non-empty string, found ${describe(v)}`);
  return v;
}

export function integer(v: unknown, path: string, min: number, max: number, what = 'a whole number'): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ValidationError(path, `${describe(v)} is not ${what} (${min}-${max})`);
  return v;
}

export function boolean(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw new ValidationError(path, `expected true or false, found ${describe(v)}`);
  return v;
}

export function number(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new ValidationError(path, `${describe(v)} is not a number from ${min} to ${max}`);
  return v;
}

export const port = (v: unknown, path: string): number => integer(v, path, 1, 65535, 'a port');

export function duration(v: unknown, path: string): string {
  const s = string(v, path);
  try {
    parseDuration(s);
  } catch (e) {
    throw new ValidationError(path, (e as Error).message);
  }
  return s;
}

export function oneOf<T extends string>(v: unknown, path: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !values.includes(v as T)) throw new ValidationError(path, `${describe(v)} is not one of ${values.join(', ')}`);
  return v as T;
}

export function ip(v: unknown, path: string): string {
  const s = string(v, path);
  if (!isIP(s)) throw new ValidationError(path, `${describe(s)} is not an IPv4 or IPv6 address`);
  return s;
}
