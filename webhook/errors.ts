// Why injection refuses a pod, with stable codes (the `reason` of
// tsmesh_webhook_refused_total). A refused pod is not created; the message
// reaches the user through the API server, so it names what was wrong and
// what to do.

export const REFUSAL_CODES = ['bad-override', 'port-conflict', 'invalid-pod', 'proxy-uid'] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];

export class InjectionRefused extends Error {
  override name = 'InjectionRefused';
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message);
  }
}

/** A mesh configuration value that cannot work (flag, config file or control-plane setting). */
export class MeshConfigError extends Error {
  override name = 'MeshConfigError';
}
