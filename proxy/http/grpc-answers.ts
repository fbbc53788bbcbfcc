// The proxy's own answers (no endpoint, timeout, overload, denial, open
// circuit...) to a gRPC caller are gRPC statuses, as Envoy answers them:
// HTTP 200, trailers-only, grpc-status and grpc-message in the head
// (grpc.ts asGrpcAnswer), x-tsmesh-error kept. A gRPC client reads a bare
// 503 as UNAVAILABLE with no word of why; this says why, and
// DEADLINE_EXCEEDED, PERMISSION_DENIED and RESOURCE_EXHAUSTED where they fit.
// It sits inside the metrics layer, so what is counted is what the caller got.
import { asGrpcAnswer, isGrpc } from './grpc.js';
import type { Layer } from './types.js';

export const grpcAnswersLayer: Layer = (next) => (req) => {
  if (!isGrpc(req.headers)) return next(req);
  return next(req).then(asGrpcAnswer);
};
