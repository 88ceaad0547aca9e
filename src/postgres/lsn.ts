import { PgwardenError } from '../errors.js';
import type { Lsn } from '../cluster/types.js';

const TWO_POW_32 = 0x1_0000_0000;
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses PostgreSQL's 'X/Y' text form of a pg_lsn into a byte offset. */
export function parseLsn(text: string): Lsn {
  const match = LSN_TEXT.exec(text.trim());
  if (!match) {
    throw new PgwardenError('INTERNAL', `"${text}" is not a WAL position in PostgreSQL's X/Y hexadecimal form.`);
  }
  return parseInt(match[1], 16) * TWO_POW_32 + parseInt(match[2], 16);
}

/** Like parseLsn, but passes SQL NULL (a replica that never received WAL, say) through as null. */
export function parseLsnOrNull(text: string | null | undefined): Lsn | null {
  return text === null || text === undefined ? null : parseLsn(text);
}

/** Formats a byte offset the way PostgreSQL prints a pg_lsn ('16/B374D848'). */
export function formatLsn(lsn: Lsn): string {
  if (!Number.isSafeInteger(lsn) || lsn < 0) {
    throw new PgwardenError('INTERNAL', `${lsn} is not a WAL position: expected a non-negative integer byte offset.`);
  }
  const high = Math.floor(lsn / TWO_POW_32);
  const low = lsn % TWO_POW_32;
  return `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;
}
