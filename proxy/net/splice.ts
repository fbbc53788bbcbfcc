// Joins two connections byte for byte (L4). Half-close is passed on (a FIN
// one way ends that direction only); an error or reset on either side
// destroys both; an idle connection is closed after `idleMs`.
import type { Duplex } from 'node:stream';

export interface SpliceResult {
  /** Bytes read from a / from b. */
  fromA: number;
  fromB: number;
}

export function splice(a: Duplex, b: Duplex, idleMs: number): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let fromA = 0;
    let fromB = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      a.destroy();
      b.destroy();
      resolve({ fromA, fromB });
    };
    const idle = setTimeout(finish, idleMs);
    idle.unref();
    const touch = (): void => void idle.refresh();
    a.on('data', (d: Buffer) => {
      fromA += d.length;
      touch();
      if (!b.write(d)) a.pause();
    });
    b.on('data', (d: Buffer) => {
      fromB += d.length;
      touch();
      if (!a.write(d)) b.pause();
    });
    a.on('drain', () => b.resume());
    b.on('drain', () => a.resume());
    let ended = 0;
    const onEnd = (to: Duplex) => () => {
      to.end();
      if (++ended === 2) finish();
    };
    a.once('end', onEnd(b));
    b.once('end', onEnd(a));
    a.once('error', finish);
    b.once('error', finish);
    a.once('close', finish);
    b.once('close', finish);
    a.resume();
    b.resume();
  });
}
