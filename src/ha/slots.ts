/**
 * Replication slot name for a member: PostgreSQL allows only lower-case letters, digits and underscores,
 * at most 63 characters. Used both by the primary (creating slots) and by replicas (primary_slot_name).
 */
export function slotNameFor(member: string): string {
  const cleaned = member.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return cleaned.slice(0, 63);
}
