// Structured logs: one JSON object a line on stderr, levels as operators set
// them with tsmesh.io/proxy-log-level (error, warn, info, debug).

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function parseLogLevel(text: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(text)) return text as LogLevel;
  throw new Error(`log level ${JSON.stringify(text)} is not one of ${LOG_LEVELS.join(', ')}`);
}

export function createLogger(
  component: string,
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Logger {
  const max = LOG_LEVELS.indexOf(level);
  const at =
    (lvl: LogLevel) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      if (LOG_LEVELS.indexOf(lvl) > max) return;
      write(JSON.stringify({ time: new Date().toISOString(), level: lvl, component, msg, ...fields }));
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (sub) => createLogger(`${component}/${sub}`, level, write),
  };
}

/** A logger that drops everything (tests that assert on behaviour, not logs). */
export const silentLogger: Logger = createLogger('silent', 'error', () => {});
