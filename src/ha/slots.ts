/**
 * Replication slot name for a member (lower-case letters, digits and underscores, at most 63 characters). The
 * primary creates slots under this name and replicas stream through it: both sides must use this one function.
 */
export { slotNameFor } from '../postgres/conf.js';
