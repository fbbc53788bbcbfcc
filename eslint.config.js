// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// ---------------------------------------------------------------------------
// Layering: the component staircase, top to bottom. A component imports only
// from the components on the stairs below it; two components on one stair
// stay independent of each other. test/ is not a stair: it sits above cli/.
const STAIRCASE = [['cli'], ['install', 'demo'], ['control'], ['webhook'], ['proxy'], ['ca', 'init'], ['contract'], ['lib']];
const STAIRS = STAIRCASE.map((stair) => stair.join(', ')).join(' → ');
const COMPONENTS = STAIRCASE.flat();
// Relative imports are matched as written, so each rule is generated for one
// folder depth: from proxy/http/x.ts, `../../control/` is control/ while
// `../control/` would be proxy/control/. test/lint/layering.test.ts checks
// that every file of every component gets the rules, and that they bite.
const MAX_DEPTH = 8;
const EXTENSIONS = '{ts,mts,cts,js,mjs,cjs}';

const stairOf = (/** @type {string} */ c) => STAIRCASE.findIndex((stair) => stair.includes(c));
/** The components `from` never imports: those on its own stair and above. */
const never = (/** @type {string} */ from) => COMPONENTS.filter((to) => to !== from && stairOf(to) <= stairOf(from));

/** The rule in words, and why. */
function layerMessage(/** @type {string} */ from, /** @type {string} */ to) {
  let why;
  if (from === 'lib') why = 'lib/ imports nothing of the project; every component shares it';
  else if (from === 'contract') why = 'contract/ imports nothing of the project but lib/; it is what the components agree on, and each of them imports it';
  else if (stairOf(from) === stairOf(to)) why = `${from}/ and ${to}/ stand on one stair and stay independent; what both need belongs in contract/ or lib/`;
  else why = `${to}/ stands above ${from}/ on the staircase (${STAIRS}); what both sides need (names, ports, env vars, ProxyConfig, vocabularies, metric names) lives in contract/`;
  return `${from}/ never imports ${to}/: ${why}`;
}

const BARREL = {
  regex: String.raw`^\.\.?/(?:.*/)?index(?:\.[cm]?[jt]s)?$`,
  message: 'no index.ts barrels: import the file that defines the symbol (a barrel loads every module it re-exports, and proxy/module-graph.test.ts counts what the proxy loads at start-up)',
};

/**
 * The `no-restricted-imports` patterns for a file `depth` folders below the
 * repository root in component `from`; `kind` says what the file is:
 * - 'code': shipped code. The staircase, and no test fixtures.
 * - 'test': a unit test (*.test.ts). Its component's rules, except that it
 *   may use fixtures: any testdata/ folder, and test/'s helpers. A unit test
 *   is read as part of its component, so a higher component is not a
 *   fixture; the few integration tests that run one as a peer (the proxy's
 *   CA and config clients against the control plane) say so where they
 *   import it, with an eslint-disable-next-line and the reason.
 * - 'fixture': a testdata/ or bench/ file. Fixtures and benchmarks assemble
 *   real parts of the mesh (a control plane against a test API server, a
 *   proxy's credentials from a CA), so they may import any component below
 *   cli/ and test/'s helpers. They are never shipped: tsconfig.build.json
 *   leaves them out, and shipped code may not import them.
 */
function layerPatterns(/** @type {string} */ from, /** @type {number} */ depth, /** @type {'code'|'test'|'fixture'} */ kind) {
  const root = String.raw`^(?:\.\./){${depth}}`;
  const patterns = [BARREL];
  if (kind === 'fixture') {
    patterns.push({ regex: `${root}cli(?:/|$)`, message: `${from}/'s fixtures and benchmarks never import cli/: they assemble parts of the mesh below the command line` });
    return patterns;
  }
  // A test may reach a higher component's testdata/ fixtures, nothing else of it.
  const rest = kind === 'test' ? String.raw`/(?!(?:[^/]*/)*testdata/)` : '(?:/|$)';
  for (const to of never(from)) {
    const message = layerMessage(from, to) + (kind === 'test' ? ` (a test may use ${to}/'s testdata/ fixtures)` : '');
    patterns.push({ regex: `${root}${to}${rest}`, message });
  }
  if (kind === 'code') {
    const message = `${from}/ code never imports test fixtures (test/, testdata/, bench/): they are not built or shipped`;
    patterns.push({ regex: `${root}test/`, message }, { regex: String.raw`(?:^|/)(?:testdata|bench)/`, message });
  }
  return patterns;
}

/**
 * no-restricted-imports reads import and export declarations only; the same
 * patterns, for import() and `typeof import()`, go to no-restricted-syntax.
 */
function dynamicImportSelectors(/** @type {{ regex: string, message: string }[]} */ patterns) {
  return patterns.map(({ regex, message }) => {
    const re = regex.replaceAll('/', String.raw`\/`);
    return { selector: `:matches(ImportExpression > Literal.source, TSImportType Literal)[value=/${re}/]`, message };
  });
}

/**
 * One config object per component, folder depth and kind of file. They set
 * no-restricted-imports and no-restricted-syntax whole: a config object
 * after them that set either rule for the same files would replace them.
 */
function layering() {
  const configs = [];
  for (const from of COMPONENTS) {
    for (let depth = 1; depth <= MAX_DEPTH; depth++) {
      const here = `${from}/${'*/'.repeat(depth - 1)}*.${EXTENSIONS}`;
      const kinds = /** @type {const} */ ([
        ['code', [here]],
        ['test', [[here, '**/*.test.ts']]],
        ['fixture', [[here, '**/testdata/**'], [here, '**/bench/**']]],
      ]);
      // Later objects win for the same rule: a test inside testdata/ is a fixture.
      for (const [kind, files] of kinds) {
        const patterns = layerPatterns(from, depth, kind);
        configs.push({
          name: `tsmesh/layering/${from}/depth-${depth}/${kind}`,
          files,
          rules: {
            'no-restricted-imports': ['error', { patterns }],
            'no-restricted-syntax': ['error', ...dynamicImportSelectors(patterns)],
          },
        });
      }
    }
  }
  // test/ imports anything of the project (it runs the whole CLI), but no barrel.
  configs.push({
    name: 'tsmesh/layering/test',
    files: [`test/**/*.${EXTENSIONS}`],
    rules: {
      'no-restricted-imports': ['error', { patterns: [BARREL] }],
      'no-restricted-syntax': ['error', ...dynamicImportSelectors([BARREL])],
    },
  });
  return configs;
}

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', '**/.cache/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', crypto: 'readonly', structuredClone: 'readonly', performance: 'readonly', fetch: 'readonly' },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
      // With noUncheckedIndexedAccess, `!` marks an index the code has already checked
      // (a regex group that matched, a DER child whose count was tested).
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', '**/testdata/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  ...layering(),
);
