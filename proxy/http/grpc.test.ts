import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { LOCAL_ERROR_NAMES } from '../../contract/vocabulary.js';
import {
  asGrpcAnswer,
  decodeGrpcMessage,
  encodeGrpcMessage,
  formatGrpcTimeout,
  GRPC,
  grpcStatusFromHttp,
  grpcStatusOfLocal,
  isGrpcContentType,
  isGrpcServerFailure,
  parseGrpcStatus,
  parseGrpcTimeout,
  whenGrpcStatus,
} from './grpc.js';
import { localResponse, type ProxyResponse } from './types.js';

describe('gRPC as the proxy reads it', () => {
  it('knows a call by its content-type: application/grpc with a +format or parameters, not grpc-web', () => {
    for (const t of ['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'application/grpc;charset=utf-8', 'Application/GRPC']) assert.ok(isGrpcContentType(t), t);
    for (const t of ['application/grpc-web', 'application/grpc-web+proto', 'application/json', 'application/grp', '', undefined, ['application/grpc']]) assert.ok(!isGrpcContentType(t), JSON.stringify(t));
  });

  it('reads grpc-timeout in every unit, and refuses what is not one', () => {
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('2M'), 120_000);
    assert.equal(parseGrpcTimeout('3S'), 3000);
    assert.equal(parseGrpcTimeout('250m'), 250);
    assert.equal(parseGrpcTimeout('1500u'), 1.5);
    assert.equal(parseGrpcTimeout('2000000n'), 2);
    assert.equal(parseGrpcTimeout('99999999S'), 99_999_999_000);
    for (const bad of ['', '5', 'S', '123456789m', '1.5S', '-1S', '10s', ' 10S', '10 S']) assert.equal(parseGrpcTimeout(bad), undefined, JSON.stringify(bad));
    assert.equal(parseGrpcTimeout(undefined), undefined);
  });

  it('writes what is left of a deadline in at most 8 digits, rounded up, never below 1 ms', () => {
    assert.equal(formatGrpcTimeout(250), '250000u');
    assert.equal(formatGrpcTimeout(0.0004), '1000u');
    assert.equal(formatGrpcTimeout(-5), '1000u');
    assert.equal(formatGrpcTimeout(99_999.999), '99999999u');
    assert.equal(formatGrpcTimeout(99_999.9995), '100000m');
    assert.equal(formatGrpcTimeout(100_000), '100000m');
    assert.equal(formatGrpcTimeout(100_000.2), '100001m');
    assert.equal(formatGrpcTimeout(3_600_000_000), '3600000S');
    assert.equal(formatGrpcTimeout(1e14), '27777778H');
    assert.equal(formatGrpcTimeout(1e16), '99999999H');
    for (const ms of [1, 17.25, 999, 86_400_000, 1e12]) {
      const back = parseGrpcTimeout(formatGrpcTimeout(ms))!;
      assert.ok(back >= ms && back - ms < Math.max(0.001, ms * 1e-6) + (ms >= 1e8 ? 1000 : 1), `${ms} -> ${formatGrpcTimeout(ms)} -> ${back}`);
    }
  });

  it('maps HTTP statuses without a grpc-status as gRPC clients read them', () => {
    assert.equal(grpcStatusFromHttp(400), GRPC.INTERNAL);
    assert.equal(grpcStatusFromHttp(401), GRPC.UNAUTHENTICATED);
    assert.equal(grpcStatusFromHttp(403), GRPC.PERMISSION_DENIED);
    assert.equal(grpcStatusFromHttp(404), GRPC.UNIMPLEMENTED);
    for (const s of [429, 502, 503, 504]) assert.equal(grpcStatusFromHttp(s), GRPC.UNAVAILABLE, String(s));
    for (const s of [200, 500, 418]) assert.equal(grpcStatusFromHttp(s), GRPC.UNKNOWN, String(s));
  });

  it("gives each of the proxy's own answers a status: no endpoint UNAVAILABLE, timeout DEADLINE_EXCEEDED, denial PERMISSION_DENIED, overload RESOURCE_EXHAUSTED", () => {
    assert.equal(grpcStatusOfLocal('no-endpoints', 503), GRPC.UNAVAILABLE);
    assert.equal(grpcStatusOfLocal('circuit-open', 503), GRPC.UNAVAILABLE);
    assert.equal(grpcStatusOfLocal('connect-failure', 503), GRPC.UNAVAILABLE);
    assert.equal(grpcStatusOfLocal('timeout', 504), GRPC.DEADLINE_EXCEEDED);
    assert.equal(grpcStatusOfLocal('denied', 403), GRPC.PERMISSION_DENIED);
    assert.equal(grpcStatusOfLocal('overloaded', 503), GRPC.RESOURCE_EXHAUSTED);
    assert.equal(grpcStatusOfLocal('proxy-error', 502), GRPC.INTERNAL);
    assert.equal(grpcStatusOfLocal('fault-injected', 503), GRPC.UNAVAILABLE, "an abort fault's status read as a client would");
    assert.equal(grpcStatusOfLocal('fault-injected', 500), GRPC.UNKNOWN);
    for (const e of LOCAL_ERROR_NAMES) assert.notEqual(grpcStatusOfLocal(e, 503), GRPC.OK, e);
  });

  it('counts as the endpoint failing only the statuses whose HTTP equivalent is a 5xx', () => {
    const failing = Object.values(GRPC).filter(isGrpcServerFailure);
    assert.deepEqual(failing, [GRPC.UNKNOWN, GRPC.DEADLINE_EXCEEDED, GRPC.UNIMPLEMENTED, GRPC.INTERNAL, GRPC.UNAVAILABLE, GRPC.DATA_LOSS]);
  });

  it('percent-encodes grpc-message as the spec does: UTF-8 bytes and "%" outside printable ASCII', () => {
    assert.equal(encodeGrpcMessage('no endpoint: 100% gone'), 'no endpoint: 100%25 gone');
    assert.equal(encodeGrpcMessage('café\n'), 'caf%C3%A9%0A');
    assert.equal(decodeGrpcMessage(encodeGrpcMessage('ünïcode % and\ttabs')), 'ünïcode % and\ttabs');
    assert.equal(decodeGrpcMessage('bad %zz'), 'bad %zz');
  });

  it('reads a grpc-status that is not a number as UNKNOWN', () => {
    assert.equal(parseGrpcStatus('14'), 14);
    assert.equal(parseGrpcStatus('fourteen'), GRPC.UNKNOWN);
    assert.equal(parseGrpcStatus(undefined), undefined);
  });

  it('turns a local answer into a trailers-only gRPC answer that keeps x-tsmesh-error and the text', () => {
    const res = asGrpcAnswer(localResponse(503, 'no-endpoints', 'tsmesh: api.shop has no ready endpoints'));
    assert.equal(res.status, 200);
    assert.equal(res.body, null);
    assert.equal(res.headers['content-type'], 'application/grpc');
    assert.equal(res.headers['grpc-status'], '14');
    assert.equal(decodeGrpcMessage(String(res.headers['grpc-message'])), 'tsmesh: api.shop has no ready endpoints');
    assert.equal(res.headers['x-tsmesh-error'], 'no-endpoints');
    assert.equal(res.meta?.localReason, 'no-endpoints');
    const upstream: ProxyResponse = { status: 503, headers: {}, body: null };
    assert.equal(asGrpcAnswer(upstream), upstream, "the endpoint's own answers are left as they are");
    assert.equal(asGrpcAnswer(res), res, 'an answer that is gRPC already is left as it is');
  });

  describe('whenGrpcStatus', () => {
    it('gives the status of a trailers-only head at once', () => {
      let got: number | undefined;
      whenGrpcStatus({ status: 200, headers: { 'grpc-status': '5' }, body: null }, () => false, (c) => (got = c));
      assert.equal(got, 5);
    });

    it('gives the status from the trailers once the body has ended, and UNKNOWN when none came', async () => {
      const body = new PassThrough();
      let trailers: Record<string, string> | undefined = undefined;
      const got: number[] = [];
      whenGrpcStatus({ status: 200, headers: {}, body, trailers: () => trailers }, () => false, (c) => got.push(c));
      body.resume();
      trailers = { 'grpc-status': '13' };
      body.end('x');
      await new Promise((r) => body.once('close', r));
      assert.deepEqual(got, [13]);
      const bare = new PassThrough();
      const none: number[] = [];
      whenGrpcStatus({ status: 200, headers: {}, body: bare }, () => false, (c) => none.push(c));
      bare.resume();
      bare.end();
      await new Promise((r) => bare.once('close', r));
      assert.deepEqual(none, [GRPC.UNKNOWN]);
    });

    it('gives CANCELLED for a body cut off because its caller left, UNAVAILABLE for one the endpoint broke off', async () => {
      for (const [left, expected] of [
        [true, GRPC.CANCELLED],
        [false, GRPC.UNAVAILABLE],
      ] as const) {
        const body = new PassThrough();
        const got: number[] = [];
        whenGrpcStatus({ status: 200, headers: {}, body }, () => left, (c) => got.push(c));
        body.destroy();
        await new Promise((r) => body.once('close', r));
        assert.deepEqual(got, [expected]);
      }
    });
  });
});
