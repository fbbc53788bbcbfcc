// The proxy's admin port: the public surface.
export { createAdminServer, adminHandler, combineReadiness, DEFAULT_ADMIN_LIMITS, type AdminServerOptions, type AdminLimits } from './server.js';
export {
  parseAppProbes,
  runAppProbe,
  AppProbesError,
  APP_HEALTH_PATH,
  DEFAULT_PROBE_TIMEOUT_SECONDS,
  MAX_PROBE_BODY_BYTES,
  type ProbeOutcome,
} from './app-health.js';
