// The layering rules of eslint.config.js bite: ESLint's Node API lints
// snippets that pose as files of each component, with the project's own
// config. The staircase is written here again, as the specification the
// config must meet, so loosening a rule there fails here.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Top to bottom: a component imports only from the stairs below its own. */
const STAIRCASE = [['cli'], ['install', 'demo'], ['control'], ['webhook'], ['proxy'], ['ca', 'init'], ['contract'], ['lib']];
const COMPONENTS = STAIRCASE.flat();
const stairOf = (c: string): number => STAIRCASE.findIndex((stair) => stair.includes(c));

const LAYERING_RULES = new Set(['no-restricted-imports', 'no-restricted-syntax']);

/** The layering messages ESLint gives `source` as the file `filePath`. */
async function layering(eslint: ESLint, filePath: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(ROOT, filePath) });
  assert.ok(result, `no lint result for ${filePath}`);
  const fatal = result.messages.filter((m) => m.fatal);
  assert.deepEqual(fatal, [], `${filePath} did not parse`);
  // no-restricted-imports puts "'<specifier>' import is restricted from being used by a pattern. " before the message.
  return result.messages.filter((m) => m.ruleId !== null && LAYERING_RULES.has(m.ruleId)).map((m) => m.message.replace(/^'[^']*' import is restricted from being used by a pattern\. /, ''));
}

const importOf = (specifier: string): string => `import { x } from '${specifier}';\nexport { x };\n`;

/** Every file of the components, as paths relative to the repository. */
function componentFiles(): string[] {
  return COMPONENTS.flatMap((c) =>
    readdirSync(join(ROOT, c), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && !e.parentPath.split('/').includes('node_modules'))
      .map((e) => relative(ROOT, join(e.parentPath, e.name))),
  );
}

describe('layering lint rules (eslint.config.js)', function () {
  this.timeout(60_000);
  let eslint: ESLint;
  before(() => {
    eslint = new ESLint({ cwd: ROOT });
  });

  it('a proxy file importing control/ is an error that says the rule', async () => {
    const messages = await layering(eslint, 'proxy/layering-probe.ts', importOf('../control/plane.js'));
    assert.equal(messages.length, 1, messages.join('\n'));
    assert.match(messages[0]!, /proxy\/ never imports control\/: control\/ stands above proxy\/ on the staircase .*lives in contract\//);
  });

  it('so is a deeper proxy file, a re-export and a dynamic import()', async () => {
    assert.match((await layering(eslint, 'proxy/http/h1/layering-probe.ts', importOf('../../../control/plane.js')))[0] ?? '', /proxy\/ never imports control\//);
    assert.match((await layering(eslint, 'proxy/layering-probe.ts', "export { x } from '../control/plane.js';\n"))[0] ?? '', /proxy\/ never imports control\//);
    const dynamic = "export const load = async (): Promise<unknown> => (await import('../control/plane.js')).startControlPlane;\n";
    assert.match((await layering(eslint, 'proxy/layering-probe.ts', dynamic))[0] ?? '', /proxy\/ never imports control\//);
  });

  it('a proxy file importing contract/, lib/, ca/ or init/ gives no layering error', async () => {
    for (const specifier of ['../contract/names.js', '../lib/log.js', '../ca/trust-bundle.js', '../init/ports.js']) {
      assert.deepEqual(await layering(eslint, 'proxy/layering-probe.ts', importOf(specifier)), [], specifier);
    }
    // proxy/http/x.ts -> ../control/ is proxy/control/, not the control plane.
    assert.deepEqual(await layering(eslint, 'proxy/http/layering-probe.ts', importOf('../control/x.js')), []);
  });

  it('lib/ imports nothing of the project; contract/ nothing but lib/', async () => {
    assert.match((await layering(eslint, 'lib/layering-probe.ts', importOf('../proxy/env.js')))[0] ?? '', /^lib\/ never imports proxy\/: lib\/ imports nothing of the project/);
    assert.match((await layering(eslint, 'contract/layering-probe.ts', importOf('../ca/root.js')))[0] ?? '', /^contract\/ never imports ca\/: contract\/ imports nothing of the project but lib\//);
    assert.deepEqual(await layering(eslint, 'contract/layering-probe.ts', importOf('../lib/duration.js')), []);
  });

  it('follows the staircase for every pair of components, at two depths', async () => {
    const wrong: string[] = [];
    for (const from of COMPONENTS) {
      for (const to of COMPONENTS) {
        if (to === from) continue;
        const allowed = stairOf(to) > stairOf(from);
        for (const [file, up] of [[`${from}/layering-probe.ts`, '../'], [`${from}/sub/layering-probe.ts`, '../../']] as const) {
          const messages = await layering(eslint, file, importOf(`${up}${to}/x.js`));
          const ok = allowed ? messages.length === 0 : messages.length === 1 && messages[0]!.startsWith(`${from}/ never imports ${to}/: `);
          if (!ok) wrong.push(`${file} -> ${to}/ (${allowed ? 'allowed' : 'never'}): ${JSON.stringify(messages)}`);
        }
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('a unit test follows its component, but may use any testdata/ fixture', async () => {
    assert.match((await layering(eslint, 'proxy/layering-probe.test.ts', importOf('../control/plane.js')))[0] ?? '', /proxy\/ never imports control\//);
    assert.deepEqual(await layering(eslint, 'proxy/layering-probe.test.ts', importOf('../control/testdata/x.js')), []);
    assert.deepEqual(await layering(eslint, 'ca/layering-probe.test.ts', importOf('../proxy/testdata/mesh.js')), []);
  });

  it('fixtures and benchmarks may import any component below cli/; shipped code no fixture', async () => {
    assert.deepEqual(await layering(eslint, 'proxy/testdata/layering-probe.ts', importOf('../../control/plane.js')), []);
    assert.deepEqual(await layering(eslint, 'control/bench/layering-probe.ts', importOf('../../test/k8s/apiserver.js')), []);
    assert.match((await layering(eslint, 'proxy/bench/layering-probe.ts', importOf('../../cli/main.js')))[0] ?? '', /never import cli\//);
    assert.match((await layering(eslint, 'proxy/layering-probe.ts', importOf('./testdata/mesh.js')))[0] ?? '', /proxy\/ code never imports test fixtures/);
    assert.match((await layering(eslint, 'lib/layering-probe.ts', importOf('../test/k8s/apiserver.js')))[0] ?? '', /lib\/ code never imports test fixtures/);
  });

  it('keeps index.ts barrels out: none exists, and importing one is an error', async () => {
    const barrels = componentFiles().filter((f) => /(^|\/)index\.[cm]?[jt]s$/.test(f));
    assert.deepEqual(barrels, [], 'import the file that defines the symbol instead');
    assert.match((await layering(eslint, 'cli/layering-probe.ts', importOf('../proxy/admin/index.js')))[0] ?? '', /no index\.ts barrels/);
    assert.match((await layering(eslint, 'test/layering-probe.ts', importOf('../init/index.js')))[0] ?? '', /no index\.ts barrels/);
  });

  it('covers every source file of every component (the rules are generated per folder depth)', async () => {
    const uncovered: string[] = [];
    for (const file of componentFiles().filter((f) => /\.[cm]?[jt]s$/.test(f))) {
      const config = (await eslint.calculateConfigForFile(join(ROOT, file))) as { rules?: Record<string, unknown> } | undefined;
      // Only the layering configs set the rule: a file they do not reach has none.
      const rule = config?.rules?.['no-restricted-imports'] as [unknown, { patterns?: unknown[] }?] | undefined;
      if ((rule?.[1]?.patterns?.length ?? 0) === 0) uncovered.push(file);
    }
    assert.deepEqual(uncovered, []);
  });
});
