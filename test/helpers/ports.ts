/**
 * Tests pick free loopback ports with the same function `pgwarden up` uses. Another process may take a port
 * before the caller binds it; callers that start servers retry with a new port on a bind failure.
 */
export { freePort } from '../../src/up/ports.js';
