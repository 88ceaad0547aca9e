/**
 * Cron expressions of the backup schedules: whether one is valid and when it next fires. Standard five-field cron
 * (minute hour day-of-month month day-of-week, or a nickname like @daily), read in UTC unless a timezone is given,
 * so that every member computes the same slot whatever its host's local time. Parsing is croner's.
 */
import { Cron } from 'croner';

/** The timezone schedules are read in when none is given. */
export const DEFAULT_CRON_TIMEZONE = 'UTC';

function evaluator(expression: string, timezone: string): Cron {
  // No job function: croner only evaluates the pattern and schedules nothing.
  return new Cron(expression, { mode: '5-part', timezone });
}

/** Whether `name` is a timezone this Node.js knows (an IANA name like "Europe/Paris", or "UTC"). */
export function isTimezone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return name.trim() !== '';
  } catch {
    return false;
  }
}

/**
 * Why `expression` is not a usable cron expression, or null when it is: not five fields, a value out of range, or
 * a date that never comes (like "0 3 30 2 *", February 30th).
 */
export function cronProblem(expression: string, timezone: string = DEFAULT_CRON_TIMEZONE): string | null {
  let cron: Cron;
  try {
    cron = evaluator(expression, timezone);
  } catch (error) {
    return (error instanceof Error ? error.message : String(error)).replace(/^Cron\w*:\s*/, '');
  }
  if (cron.nextRun(new Date(0)) === null) return 'it never fires (no date matches it)';
  return null;
}

/**
 * The first time strictly after `afterMs` (ms since the epoch) at which `cron` fires, read in `timezone` (UTC by
 * default), as ms since the epoch; null when it never fires again. Throws on an expression `cronProblem` refuses
 * (the settings are validated before they get here).
 */
export function nextRun(cron: string, afterMs: number, timezone: string = DEFAULT_CRON_TIMEZONE): number | null {
  const next = evaluator(cron, timezone).nextRun(new Date(afterMs));
  return next === null ? null : next.getTime();
}
