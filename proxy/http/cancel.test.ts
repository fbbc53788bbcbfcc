import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { Cancellation } from './cancel.js';

describe('Cancellation', () => {
  it('aborts with its parent, runs each listener once, and takes the parent\'s reason', () => {
    const parent = new AbortController();
    const c = new Cancellation(parent.signal);
    const calls: string[] = [];
    const a = (): void => void calls.push('a');
    c.addEventListener('abort', a);
    c.addEventListener('abort', () => calls.push('b'));
    const reason = new Error('client left');
    parent.abort(reason);
    c.abort(new Error('again'));
    assert.deepEqual(calls, ['a', 'b']);
    assert.equal(c.aborted, true);
    assert.equal(c.reason, reason);
  });

  it('aborts on its own without touching the parent, and stops listening to it', () => {
    const parent = new AbortController();
    const c = new Cancellation(parent.signal);
    assert.equal(getEventListeners(parent.signal, 'abort').length, 1);
    let called = 0;
    const l = (): void => void called++;
    c.addEventListener('abort', l);
    c.removeEventListener('abort', l);
    c.abort('timeout');
    assert.equal(parent.signal.aborted, false);
    assert.equal(getEventListeners(parent.signal, 'abort').length, 0);
    assert.equal(called, 0, 'a removed listener is not called');
  });

  it('leaves nothing on a long-lived parent once disposed, and starts aborted under an aborted parent', () => {
    const parent = new AbortController();
    for (let i = 0; i < 100; i++) new Cancellation(parent.signal).dispose();
    assert.equal(getEventListeners(parent.signal, 'abort').length, 0);
    parent.abort('gone');
    const late = new Cancellation(new Cancellation(parent.signal));
    assert.equal(late.aborted, true);
    assert.equal(late.reason, 'gone');
  });
});
