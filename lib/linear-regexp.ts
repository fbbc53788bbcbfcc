// Regular expressions matched in time linear in the input, whatever the
// pattern: route regexes come from cluster users (Gateway API promises RE2
// semantics, which are linear), and a backtracking RegExp can be made to
// spend exponential time on one request header ("(a+)+" against "aaaa…!").
//
// The syntax is JavaScript's with the u flag, less what no linear matcher
// can do (lookaround, backreferences). The pattern is parsed here into a
// Thompson NFA (one state per character test, alternatives as splits,
// counted repetition unrolled) and run as a DFA built lazily from it: each
// DFA state is a set of NFA states, made on first need and cached (a bounded
// number), so a character costs one table lookup once its transition is
// known and at most one pass over the NFA when it is not. Nothing
// backtracks. What a single character matches (".", "[a-z]", "\p{L}", "\s")
// is decided by a RegExp of that one atom, which cannot backtrack over more
// than one character; ASCII answers are tabled at compile time.

/** A pattern this module cannot run in linear time, or that is not a regular expression. */
export class LinearRegExpError extends Error {}

/** RE2's bound on a counted repetition ({n,m}). */
export const MAX_REPEAT = 1000;
/** NFA states at most (counted repetition unrolls): what bounds the cost of one character. */
export const MAX_STATES = 5000;
/**
 * DFA states cached per pattern, and NFA states held by their sets in all:
 * past either, transitions are computed each time (still linear), so that
 * crafted values cannot grow a pattern's cache past about half a megabyte.
 */
export const MAX_DFA_STATES = 256;
const MAX_CACHED_KERNEL = 32_768;
/** Groups nested in one another at most (parsing and compiling recurse on them). */
export const MAX_DEPTH = 200;
/** Cached transitions on non-ASCII code points per DFA state. */
const MAX_OTHER_TRANSITIONS = 64;

type Assertion = 'start' | 'end' | 'word' | 'nonword';

type Node =
  | { t: 'empty' }
  | { t: 'char'; matcher: number }
  | { t: 'cat'; xs: Node[] }
  | { t: 'alt'; xs: Node[] }
  | { t: 'rep'; x: Node; min: number; max: number }
  | { t: 'assert'; k: Assertion };

interface CharTest {
  ascii: Uint8Array;
  other: (cp: number) => boolean;
}

const SYNTAX = new Set('^$\\.*+?()[]{}|');

// Atoms recur across patterns ("[0-9]", "[^/]", "."): tabled once each.
const charTests = new Map<string, CharTest>();

function charTest(source: string): CharTest {
  let t = charTests.get(source);
  if (t) return t;
  const re = new RegExp(`^(?:${source})$`, 'u');
  const ascii = new Uint8Array(128);
  for (let c = 0; c < 128; c++) ascii[c] = re.test(String.fromCharCode(c)) ? 1 : 0;
  t = { ascii, other: (cp) => re.test(String.fromCodePoint(cp)) };
  if (charTests.size < 1000) charTests.set(source, t);
  return t;
}

function literalTest(cp: number): CharTest {
  const ascii = new Uint8Array(128);
  if (cp < 128) ascii[cp] = 1;
  return { ascii, other: (c) => c === cp };
}

class Parser {
  private i = 0;
  private depth = 0;
  readonly tests: CharTest[] = [];
  usesWordBoundary = false;

  constructor(private readonly s: string) {}

  parse(): Node {
    const n = this.disjunction();
    if (this.i < this.s.length) throw new LinearRegExpError(`unexpected "${this.s[this.i] ?? ''}" at ${this.i}`);
    return n;
  }

  private disjunction(): Node {
    const xs = [this.alternative()];
    while (this.s[this.i] === '|') {
      this.i++;
      xs.push(this.alternative());
    }
    return xs.length === 1 ? xs[0]! : { t: 'alt', xs };
  }

  private alternative(): Node {
    const xs: Node[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') xs.push(this.term());
    return xs.length === 0 ? { t: 'empty' } : xs.length === 1 ? xs[0]! : { t: 'cat', xs };
  }

  private term(): Node {
    const s = this.s;
    const c = s[this.i]!;
    if (c === '^' || c === '$') {
      this.i++;
      return { t: 'assert', k: c === '^' ? 'start' : 'end' };
    }
    if (c === '\\' && (s[this.i + 1] === 'b' || s[this.i + 1] === 'B')) {
      this.usesWordBoundary = true;
      const k = s[this.i + 1] === 'b' ? 'word' : 'nonword';
      this.i += 2;
      return { t: 'assert', k };
    }
    return this.quantified(this.atom());
  }

  private atom(): Node {
    const s = this.s;
    const start = this.i;
    const c = s[start]!;
    if (c === '(') return this.group();
    if (c === '.') {
      this.i++;
      return this.char(charTest('.'));
    }
    if (c === '[') {
      let j = start + 1;
      if (s[j] === '^') j++;
      while (j < s.length && s[j] !== ']') j += s[j] === '\\' ? 2 : 1;
      if (j >= s.length) throw new LinearRegExpError(`"[" at ${start} is not closed`);
      this.i = j + 1;
      return this.char(charTest(s.slice(start, this.i)));
    }
    if (c === '\\') return this.char(charTest(s.slice(start, (this.i = this.escapeEnd(start)))));
    if (SYNTAX.has(c)) throw new LinearRegExpError(`"${c}" at ${start} has nothing to repeat or is not escaped`);
    const cp = s.codePointAt(start)!;
    this.i += cp > 0xffff ? 2 : 1;
    return this.char(literalTest(cp));
  }

  /** The end of the escape at `at` (a backslash) that stands for one character or a class of them. */
  private escapeEnd(at: number): number {
    const s = this.s;
    const e = s[at + 1];
    if (e === undefined) throw new LinearRegExpError('"\\" at the end of the pattern escapes nothing');
    if (/[1-9]/.test(e) || e === 'k') throw new LinearRegExpError(`a backreference (\\${e}) cannot be matched in linear time`);
    const to = (close: string): number => {
      const j = s.indexOf(close, at + 2);
      if (j < 0) throw new LinearRegExpError(`"\\${e}" at ${at} is not closed with "${close}"`);
      return j + 1;
    };
    if ((e === 'p' || e === 'P') && s[at + 2] === '{') return to('}');
    if (e === 'u' && s[at + 2] === '{') return to('}');
    if (e === 'u') {
      const end = at + 6;
      const unit = parseInt(s.slice(at + 2, end), 16);
      // A surrogate pair written as two escapes is one code point under the u flag.
      if (unit >= 0xd800 && unit <= 0xdbff && s.startsWith('\\u', end) && /^[dD][c-fC-F][0-9a-fA-F]{2}$/.test(s.slice(end + 2, end + 6))) return end + 6;
      return end;
    }
    if (e === 'x') return at + 4;
    if (e === 'c') return at + 3;
    return at + 2;
  }

  private group(): Node {
    const s = this.s;
    const at = this.i;
    this.i++;
    if (s[this.i] === '?') {
      const next = s[this.i + 1];
      if (next === ':') this.i += 2;
      else if (next === '<' && s[this.i + 2] !== '=' && s[this.i + 2] !== '!') {
        const close = s.indexOf('>', this.i);
        if (close < 0) throw new LinearRegExpError(`the group name at ${at} is not closed with ">"`);
        this.i = close + 1;
      } else if (next === '=' || next === '!' || next === '<') {
        throw new LinearRegExpError('lookaround ((?=, (?!, (?<=, (?<!) cannot be matched in linear time');
      } else {
        throw new LinearRegExpError(`the group at ${at} sets flags ("(?${next ?? ''}"), which is not supported; spell the cases out instead, e.g. [Aa] for a in either case`);
      }
    }
    if (++this.depth > MAX_DEPTH) throw new LinearRegExpError(`groups nest more than ${MAX_DEPTH} deep; write the pattern flatter`);
    const inner = this.disjunction();
    this.depth--;
    if (s[this.i] !== ')') throw new LinearRegExpError(`the group at ${at} is not closed with ")"`);
    this.i++;
    return inner;
  }

  private quantified(x: Node): Node {
    const s = this.s;
    const c = s[this.i];
    let min: number;
    let max: number;
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      [min, max] = c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(s.slice(this.i));
      if (!m) return x;
      this.i += m[0].length;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT))
        throw new LinearRegExpError(`the repetition ${m[0]} counts past ${MAX_REPEAT} (RE2's bound); use * or + where the count does not matter`);
      if (max < min) throw new LinearRegExpError(`the repetition ${m[0]} has its bounds out of order`);
    } else {
      return x;
    }
    // Lazy and greedy match the same strings; only which match is reported differs.
    if (s[this.i] === '?') this.i++;
    return { t: 'rep', x, min, max };
  }

  private char(test: CharTest): Node {
    this.tests.push(test);
    return { t: 'char', matcher: this.tests.length - 1 };
  }
}

const CHAR = 0;
const SPLIT = 1;
const ASSERT = 2;
const MATCH = 3;

/** The NFA: parallel arrays by state number. */
class Program {
  readonly op: number[] = [];
  readonly out: number[] = [];
  readonly out2: number[] = [];
  /** CHAR: index of its test; ASSERT: the assertion. */
  readonly arg: (number | Assertion)[] = [];

  add(op: number, out: number, out2 = -1, arg: number | Assertion = -1): number {
    if (this.op.length >= MAX_STATES)
      throw new LinearRegExpError(`the pattern unrolls to more than ${MAX_STATES} states (counted repetitions multiply); write smaller counts, or * and + where the count does not matter`);
    this.op.push(op);
    this.out.push(out);
    this.out2.push(out2);
    this.arg.push(arg);
    return this.op.length - 1;
  }

  /** The states that match `n` and go on to `next`; returns its first state. */
  emit(n: Node, next: number): number {
    switch (n.t) {
      case 'empty':
        return next;
      case 'char':
        return this.add(CHAR, next, -1, n.matcher);
      case 'assert':
        return this.add(ASSERT, next, -1, n.k);
      case 'cat':
        return n.xs.reduceRight((to, x) => this.emit(x, to), next);
      case 'alt': {
        const starts = n.xs.map((x) => this.emit(x, next));
        return starts.reduceRight((rest, s) => this.add(SPLIT, s, rest));
      }
      case 'rep': {
        let s: number;
        if (n.max === Infinity) {
          const loop = this.add(SPLIT, -1, next);
          this.out[loop] = this.emit(n.x, loop);
          s = loop;
        } else {
          s = next;
          for (let k = n.min; k < n.max; k++) s = this.add(SPLIT, this.emit(n.x, s), next);
        }
        for (let k = 0; k < n.min; k++) s = this.emit(n.x, s);
        return s;
      }
    }
  }
}

const isWord = (cp: number): boolean => (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x5f;

interface DState {
  /** The NFA states reached by the last character (before following splits and assertions), sorted. */
  kernel: number[];
  atStart: boolean;
  /** Whether the last character was a word character (\b); false when the pattern has no \b or \B. */
  prevWord: boolean;
  /** Whether the state is cached, and so are its transitions. */
  cached: boolean;
  ascii: (DState | undefined)[];
  other: Map<number, DState>;
  accepts: boolean | undefined;
}

// The tables of a state that is not cached: never written.
const UNCACHED: (DState | undefined)[] = [];
const NO_OTHER = new Map<number, DState>();

/** A compiled pattern that must match the whole of a value. */
export class LinearRegExp {
  private readonly prog = new Program();
  private readonly tests: CharTest[];
  private readonly wordBoundaries: boolean;
  private readonly states = new Map<string, DState>();
  private readonly start: DState;
  // Scratch for closures: a state is in the current set when mark[state] === generation.
  private readonly mark: Uint32Array;
  private generation = 0;
  private visited = 0;
  private kernelCached = 0;

  constructor(readonly source: string) {
    const parser = new Parser(source);
    const ast = parser.parse();
    this.tests = parser.tests;
    this.wordBoundaries = parser.usesWordBoundary;
    const match = this.prog.add(MATCH, -1);
    const first = this.prog.emit(ast, match);
    this.mark = new Uint32Array(this.prog.op.length);
    this.start = this.state([first], true, false);
  }

  /** Whether `value` matches the whole pattern. */
  test(value: string): boolean {
    let d = this.start;
    for (let i = 0; i < value.length; ) {
      const c = value.charCodeAt(i);
      let next: DState | undefined;
      if (c < 128) {
        i++;
        next = d.ascii[c];
        if (!next) {
          next = this.step(d, c);
          if (d.cached) d.ascii[c] = next;
        }
      } else {
        const cp = value.codePointAt(i)!;
        i += cp > 0xffff ? 2 : 1;
        next = d.other.get(cp);
        if (!next) {
          next = this.step(d, cp);
          if (d.cached && d.other.size < MAX_OTHER_TRANSITIONS) d.other.set(cp, next);
        }
      }
      if (next.kernel.length === 0) return false;
      d = next;
    }
    return (d.accepts ??= this.closure(d, true, false, () => undefined));
  }

  /** How many DFA states are cached (for tests). */
  get cachedStates(): number {
    return this.states.size;
  }

  /** NFA states visited so far while building transitions: the work done beyond one table lookup a character (for tests). */
  get work(): number {
    return this.visited;
  }

  private state(kernel: number[], atStart: boolean, prevWord: boolean): DState {
    const key = `${atStart ? 's' : ''}${prevWord ? 'w' : ''}${kernel.join(',')}`;
    const d = this.states.get(key);
    if (d) return d;
    // Past the bounds the state is used once and left to the collector: slower, still linear.
    const cached = this.states.size < MAX_DFA_STATES && this.kernelCached + kernel.length <= MAX_CACHED_KERNEL;
    const made: DState = { kernel, atStart, prevWord, cached, ascii: cached ? new Array<DState | undefined>(128) : UNCACHED, other: cached ? new Map() : NO_OTHER, accepts: undefined };
    if (cached) {
      this.states.set(key, made);
      this.kernelCached += kernel.length;
    }
    return made;
  }

  /**
   * Follows splits and assertions from `d`'s kernel at a position between its
   * last character and one that is a word character or not (`nextWord`), or
   * the end; calls `onChar` with each character state reached. Returns
   * whether the match state is reached.
   */
  private closure(d: DState, atEnd: boolean, nextWord: boolean, onChar: (s: number) => void): boolean {
    const { op, out, out2, arg } = this.prog;
    const mark = this.mark;
    if (++this.generation === 0xffffffff) {
      mark.fill(0);
      this.generation = 1;
    }
    const g = this.generation;
    const stack = [...d.kernel];
    let matched = false;
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (mark[s] === g) continue;
      mark[s] = g;
      this.visited++;
      switch (op[s]) {
        case CHAR:
          onChar(s);
          break;
        case MATCH:
          matched = true;
          break;
        case SPLIT:
          stack.push(out2[s]!, out[s]!);
          break;
        case ASSERT: {
          const k = arg[s];
          const holds = k === 'start' ? d.atStart : k === 'end' ? atEnd : k === 'word' ? d.prevWord !== nextWord : d.prevWord === nextWord;
          if (holds) stack.push(out[s]!);
          break;
        }
      }
    }
    return matched;
  }

  private step(d: DState, cp: number): DState {
    const nextWord = this.wordBoundaries && isWord(cp);
    const reached: number[] = [];
    const { out, arg } = this.prog;
    this.closure(d, false, nextWord, (s) => {
      const t = this.tests[arg[s] as number]!;
      if (cp < 128 ? t.ascii[cp] === 1 : t.other(cp)) reached.push(out[s]!);
    });
    const kernel = [...new Set(reached)].sort((a, b) => a - b);
    return this.state(kernel, false, nextWord);
  }
}
