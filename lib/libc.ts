// The C library's calls that Node has no API for (getsockopt's
// SO_ORIGINAL_DST, madvise, malloc_trim), through koffi, whose prebuilt
// binaries come inside its npm packages: a plain `npm ci`, no compiler, no
// install script.
//
// koffi is loaded from its CommonJS entry. Its ESM entry imports node:util and
// node:fs as namespaces, and an ESM namespace of a built-in reads every export,
// lazy getters too, which loads far more of Node than the proxy uses
// (proxy/module-graph.test.ts).
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;

let self: Koffi.LibraryHandle | undefined;

/**
 * A function of the process's own C library, declared by its C prototype:
 * dlopen(NULL) finds the symbols already loaded into node, glibc or musl alike.
 * Throws when the symbol is not there.
 */
export function libcFunction(prototype: string): ReturnType<Koffi.LibraryHandle['func']> {
  self ??= koffi.load(null);
  return self.func(prototype);
}

/** errno as the last call through koffi left it. */
export function lastErrno(): number {
  return koffi.errno();
}
