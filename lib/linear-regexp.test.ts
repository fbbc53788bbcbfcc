import assert from 'node:assert/strict';
import { LinearRegExp, LinearRegExpError, MAX_DFA_STATES, MAX_STATES } from './linear-regexp.js';

/** A seeded generator, so that every run checks the same patterns and inputs. */
function lcg(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s % n;
  };
}

const ATOMS = ['a', 'b', '.', '[ab]', '[^a]', '\\d', '\\w', '\\s', 'ab', '\\b', '\\B', '^', '$', '(?:a|b)', '(a|)', 'é', '\\p{L}', '😀', '[😀a]', '\\u{1F600}', '\\uD83D\\uDE00', '-', '\\/', '\\.', '(?<n>b)'];
const QUANTIFIERS = ['', '', '*', '+', '?', '{2}', '{1,3}', '{0,}', '*?', '+?', '{2,}'];
const CHARS = ['a', 'a', 'b', 'b', ' ', '1', '-', '/', '.', 'é', '😀', '\uD83D', '_', '\n'];

describe('lib/linear-regexp', function () {
  it('matches what a whole-value RegExp with the u flag matches, on 10,000 generated patterns', () => {
    const rnd = lcg(42);
    const pattern = (depth: number): string => {
      const k = rnd(depth > 2 ? 2 : 5);
      if (k <= 1) {
        const a = ATOMS[rnd(ATOMS.length)]!;
        return /^[\^$]$|^\\[bB]$/.test(a) ? a : a + QUANTIFIERS[rnd(QUANTIFIERS.length)]!;
      }
      if (k === 2) return pattern(depth + 1) + pattern(depth + 1);
      if (k === 3) return `${pattern(depth + 1)}|${pattern(depth + 1)}`;
      return `(${rnd(2) ? '?:' : ''}${pattern(depth + 1)})${QUANTIFIERS[rnd(QUANTIFIERS.length)]!}`;
    };
    let compared = 0;
    let matched = 0;
    for (let t = 0; t < 10_000; t++) {
      const p = pattern(0);
      let native: RegExp;
      try {
        native = new RegExp(`^(?:${p})$`, 'u');
      } catch {
        continue;
      }
      const linear = new LinearRegExp(p);
      for (let k = 0; k < 20; k++) {
        let s = '';
        for (let j = rnd(7); j > 0; j--) s += CHARS[rnd(CHARS.length)]!;
        const want = native.test(s);
        assert.equal(linear.test(s), want, `${JSON.stringify(p)} on ${JSON.stringify(s)}`);
        compared++;
        if (want) matched++;
      }
    }
    // Enough of both answers for the comparison to mean something.
    assert.ok(compared > 150_000 && matched > 5_000, `${compared} compared, ${matched} matched`);
  });

  it('takes code points whole: astral characters, surrogate pairs written as two escapes, Unicode properties', () => {
    assert.ok(new LinearRegExp('.').test('😀'));
    assert.ok(!new LinearRegExp('..').test('😀'));
    assert.ok(new LinearRegExp('\\uD83D\\uDE00').test('😀'));
    assert.ok(new LinearRegExp('\\p{Lu}\\p{Ll}+').test('Ärger'));
    assert.ok(!new LinearRegExp('\\p{Lu}\\p{Ll}+').test('ärger'));
    assert.ok(new LinearRegExp('[^/]+/\\d{2,4}').test('items/2026'));
  });

  // The work of a match beyond one table lookup a character is counted (NFA
  // states visited while building transitions): linear means it grows no
  // faster than the input. A backtracking RegExp takes time exponential in n
  // for all but "(?:a|aa)+c" (0.2-1 s at 24 characters on Node 20, about a
  // year at 48).
  for (const [pattern, unit] of [
    ['(a+)+', 'a'],
    ['(a|a)*', 'a'],
    ['(.*)*b', 'a'],
    ['(\\w+\\s?)+', 'ab '],
    ['(a*)*b', 'a'],
    ['(?:a|aa)+c', 'a'],
    ['(x+x+)+y', 'x'],
    ['a{1,1000}a{1,1000}', 'a'],
  ] as const) {
    it(`runs ${pattern} on a hostile value in work linear in its length`, () => {
      const work = (n: number): number => {
        const re = new LinearRegExp(pattern);
        assert.equal(re.test(unit.repeat(n) + '!'), false);
        return re.work;
      };
      const small = work(5_000);
      const large = work(50_000);
      // Ten times the input, at most ten times the work (plus the DFA's warm-up, which the small run pays too).
      assert.ok(large <= 10 * small, `${pattern}: ${small} states visited for 5,000 characters, ${large} for 50,000`);
    });
  }

  it('visits each NFA state at most once a character when its DFA cache is full', () => {
    const re = new LinearRegExp('a{1,1000}a{1,1000}');
    const n = 10_000;
    assert.equal(re.test('a'.repeat(n)), false);
    assert.ok(re.cachedStates > 0 && re.cachedStates <= MAX_DFA_STATES, `${re.cachedStates} cached`);
    assert.ok(re.work <= (n + 1) * MAX_STATES, `${re.work}`);
  });

  const refused: [string, RegExp][] = [
    ['(a)\\1', /backreference/],
    ['(?<x>a)\\k<x>', /backreference/],
    ['a(?=b)', /lookaround/],
    ['(?<!a)b', /lookaround/],
    ['a{1001}', /counts past 1000.*use \* or \+/],
    ['a{2,1001}', /counts past 1000/],
    ['(?:a{1,1000}){1,1000}', new RegExp(`more than ${MAX_STATES} states.*write smaller counts`)],
    [`${'('.repeat(201)}a${')'.repeat(201)}`, /nest more than 200 deep/],
  ];
  for (const [pattern, message] of refused) {
    it(`refuses ${pattern.length > 40 ? `${pattern.slice(0, 40)}…` : pattern}, saying why`, () => {
      assert.throws(() => new LinearRegExp(pattern), (e: unknown) => e instanceof LinearRegExpError && message.test(e.message));
    });
  }
});
