// The CLI's side of the control plane's admin port (admin.ts): GET one of
// its JSON paths, with errors that say what was tried and what to do.

const HOW_TO_REACH = [
  'is the control plane running and its admin port reachable there?',
  'tsmesh demo prints its control plane address: pass it as --admin-address HOST:PORT;',
  'in a cluster, run `kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014` first.',
].join(' ');

/**
 * GETs `path` of the admin port at `adminAddress` as JSON. Any other answer
 * than 200 is an Error: the `error` of a JSON answer, `notServed` for a 404
 * without one (the path is not served there), else the status and text.
 */
export async function fetchAdminJson<T>(adminAddress: string, path: string, notServed: string, timeoutMs = 5000): Promise<T> {
  const url = `http://${adminAddress}${path}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const err = e as Error & { cause?: Error };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (err.cause?.message ?? err.message);
    throw new Error(`cannot reach the control plane at ${url} (${why}); ${HOW_TO_REACH}`, { cause: e });
  }
  const text = await res.text();
  if (res.status === 200) return JSON.parse(text) as T;
  let error: unknown;
  try {
    error = (JSON.parse(text) as { error?: unknown }).error;
  } catch {
    // not JSON: a path the admin port does not serve, or not a tsmesh control plane
  }
  if (typeof error === 'string') throw new Error(error);
  throw new Error(res.status === 404 ? notServed : `the control plane at ${url} answered HTTP ${res.status}: ${text.trim()}`);
}
