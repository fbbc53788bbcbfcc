import assert from 'node:assert/strict';
import { admissionResponse, BadReviewError, parseAdmissionReview, podCreateReview, readAdmissionAnswer } from './admission.js';

const base = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' };
const request = { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', object: { spec: {} } };

describe('AdmissionReview v1', function () {
  it('reads the request fields the webhook uses', function () {
    const r = parseAdmissionReview({ ...base, request: { ...request, namespace: 'shop', name: '', subResource: null, dryRun: true, resource: { group: '', version: 'v1', resource: 'pods' } } });
    assert.deepEqual(r, {
      uid: 'u-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      object: { spec: {} },
      dryRun: true,
    });
  });

  it('says what is wrong with a review it cannot read', function () {
    const cases: [unknown, RegExp][] = [
      ['text', /got string/],
      [{ ...base, apiVersion: undefined }, /apiVersion undefined is not supported/],
      [{ ...base, request: { ...request, kind: 'Pod' } }, /request\.kind must be an object/],
      [{ ...base, request: { ...request, operation: '' } }, /request\.operation is missing/],
      [{ ...base, request: { ...request, namespace: 7 } }, /request\.namespace must be a string/],
    ];
    for (const [body, message] of cases) assert.throws(() => parseAdmissionReview(body), (e: unknown) => e instanceof BadReviewError && message.test(e.message));
  });

  it('writes allowed, patched, warned and refused responses', function () {
    assert.deepEqual(admissionResponse('u', { allowed: true }), { ...base, response: { uid: 'u', allowed: true } });
    const patched = admissionResponse('u', { allowed: true, patch: [{ op: 'add', path: '/a', value: 1 }], warnings: ['w'] });
    assert.deepEqual(patched['response'], { uid: 'u', allowed: true, patchType: 'JSONPatch', patch: Buffer.from('[{"op":"add","path":"/a","value":1}]').toString('base64'), warnings: ['w'] });
    assert.deepEqual(admissionResponse('u', { allowed: false, code: 400, message: 'no' })['response'], { uid: 'u', allowed: false, status: { code: 400, message: 'no' } });
  });

  it('builds the review the API server sends for a pod, and reads back what a webhook answers', function () {
    const pod = { metadata: { name: 'p' }, spec: { containers: [] } };
    const r = parseAdmissionReview(podCreateReview(pod, { uid: 'u-2', namespace: 'shop', dryRun: true }));
    assert.deepEqual(r, { uid: 'u-2', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'shop', operation: 'CREATE', object: pod, dryRun: true });
    const patch = [{ op: 'add', path: '/a', value: 1 }];
    assert.deepEqual(readAdmissionAnswer(admissionResponse('u-2', { allowed: true, patch, warnings: ['w'] })), { uid: 'u-2', allowed: true, patch, warnings: ['w'] });
    assert.deepEqual(readAdmissionAnswer(admissionResponse('u-3', { allowed: false, code: 403, message: 'no' })), { uid: 'u-3', allowed: false, message: 'no', warnings: [] });
    const cases: [unknown, RegExp][] = [
      [{ kind: 'Status' }, /expected an AdmissionReview/],
      [base, /no "response" object/],
      [{ ...base, response: { uid: 'u', allowed: true, patch: 'not base64 json' } }, /not base64-encoded JSON/],
    ];
    for (const [body, message] of cases) assert.throws(() => readAdmissionAnswer(body), (e: unknown) => e instanceof BadReviewError && message.test(e.message));
  });
});
