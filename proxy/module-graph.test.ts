import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// What the sidecar loads is what it holds in memory in every pod. An ESM
// import of a Node built-in makes the module's namespace, which reads every
// export, and some exports are getters that load a module graph of their own:
// `node:http`'s WebSocket loads Node's bundled undici (12-16 MB of RSS on Node 24),
// `node:fs`'s promises loads readline and the REPL's history, `node:util`'s
// loads the streams and worker_threads, `node:crypto`'s webcrypto. The proxy
// takes these through process.getBuiltinModule, which reads no export, and
// koffi through its CommonJS entry (its ESM entry imports node:util and node:fs).

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Imported only through process.getBuiltinModule (or createRequire) by the proxy's modules. */
const NOT_AS_ESM: Record<string, string> = {
  'node:http': "its WebSocket getter loads Node's bundled undici",
  'node:fs': 'its promises getter loads fs/promises, readline and the REPL history',
  'node:util': 'its getters load the streams and worker_threads',
  'node:crypto': 'its webcrypto getter loads WebCrypto',
  koffi: 'its ESM entry imports node:util and node:fs',
};

interface Import {
  from: string;
  specifier: string;
  /** Every name it brings in is a type: the import is erased. */
  typeOnly: boolean;
}

/** The imports of one TypeScript file, static and (with string literals) dynamic. */
function importsOf(file: string, dynamic: boolean): Import[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly || (clause.name === undefined && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)));
      out.push({ from: file, specifier: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ from: file, specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (dynamic && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      out.push({ from: file, specifier: node.arguments[0].text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/**
 * Every project file the entries load, and every import of a package or a
 * built-in among them. Relative specifiers name the compiled file (x.js);
 * the source is x.ts. `noDynamic` files are read for static imports only.
 */
function moduleGraph(entries: string[], noDynamic: ReadonlySet<string>): { files: Set<string>; external: Import[] } {
  const files = new Set<string>();
  const external: Import[] = [];
  const todo = [...entries];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const imp of importsOf(file, !noDynamic.has(file))) {
      if (imp.typeOnly) continue;
      if (imp.specifier.startsWith('.')) todo.push(join(dirname(file), imp.specifier.replace(/\.js$/, '.ts')));
      else external.push(imp);
    }
  }
  return { files, external };
}

describe("the proxy's module graph", () => {
  // cli/main.ts imports every other command lazily; the proxy runs only its own.
  const main = join(ROOT, 'cli/main.ts');
  const graph = moduleGraph([main, join(ROOT, 'cli/commands/proxy.ts')], new Set([main]));

  it('is read whole: the sidecar, its listeners, identity and admin are in it', () => {
    const names = new Set([...graph.files].map((f) => relative(ROOT, f)));
    for (const f of ['proxy/sidecar.ts', 'proxy/http/server.ts', 'proxy/admin/server.ts', 'proxy/identity/manager.ts', 'lib/file-pages.ts']) assert.ok(names.has(f), `${f} is not in the graph`);
    assert.ok(graph.external.some((i) => i.specifier === 'node:net'), 'no import of node:net found');
  });

  it('loads the OpenTelemetry SDK and exporter only by import(), once span export is on', () => {
    const everyFileStatic: ReadonlySet<string> = { has: () => true } as unknown as ReadonlySet<string>;
    const loadedAtStart = moduleGraph([main, join(ROOT, 'cli/commands/proxy.ts')], everyFileStatic);
    const otel = loadedAtStart.external.filter((i) => i.specifier.startsWith('@opentelemetry/')).map((i) => `${relative(ROOT, i.from)} imports ${i.specifier}`);
    assert.deepEqual(otel, [], 'the proxy loads OpenTelemetry at start');
    assert.ok(!loadedAtStart.files.has(join(ROOT, 'proxy/telemetry/otel.ts')), 'proxy/telemetry/otel.ts is loaded at start');
    assert.ok(graph.files.has(join(ROOT, 'proxy/telemetry/otel.ts')), 'proxy/telemetry/otel.ts is not reachable by import()');
  });

  it('takes http, fs, util, crypto and koffi without an ESM import, whose namespace loads more than is used', () => {
    const bad = graph.external
      .filter((i) => NOT_AS_ESM[i.specifier] !== undefined)
      .map((i) => `${relative(ROOT, i.from)} imports ${i.specifier}: ${NOT_AS_ESM[i.specifier]!}; use process.getBuiltinModule (createRequire for koffi)`);
    assert.deepEqual(bad, []);
  });
});
