import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines on stderr. Anything that looks like a secret is redacted even if a caller
 * passes a whole config object by mistake.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: bindings,
      redact: {
        paths: ['password', '*.password', '*.*.password', '*.*.*.password', 'authorization', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination(2),
  );
}
