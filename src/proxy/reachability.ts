/**
 * Which members' PostgreSQL this proxy cannot reach, measured with bare TCP connects. The proxies publish it under
 * `proxies/<id>` so that the primary can tell a partition between it and every proxy (clients cut off while the
 * primary itself looks healthy) and hand over to a replica the proxies do reach.
 *
 * A probe connects and destroys the socket at once without sending a byte: PostgreSQL logs nothing for such a
 * connection (no startup packet, no "incomplete startup packet" either), so probing once a second stays silent.
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';

export interface ProbedMember {
  name: string;
  host: string;
  port: number;
}

export interface MemberReachabilityOptions {
  /** Time between two probes of a member; default 1000 ms. */
  intervalMs?: number;
  /** A connect that has not succeeded after this long counts as failed; default 1000 ms. */
  timeoutMs?: number;
  /** Consecutive failed probes before a member counts as unreachable; default 2 (one lost SYN is not a partition). */
  failuresBeforeUnreachable?: number;
}

interface MemberState {
  host: string;
  port: number;
  /** Consecutive failed probes. */
  failures: number;
  /** Wall-clock ms of the first failure of the current run of failures. */
  firstFailureAt: number;
  /** Set once `failures` reaches the threshold: the published since-time. */
  unreachableSince: number | null;
  inFlight: Socket | null;
  timeout: NodeJS.Timeout | null;
  /** A tick came while the probe was in flight: the next one starts as soon as it settles. */
  due: boolean;
}

/** Emits 'change' whenever the set of unreachable members or one of their since-times changes. */
export class MemberReachability extends EventEmitter {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly threshold: number;
  private readonly states = new Map<string, MemberState>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly members: () => ReadonlyArray<ProbedMember>,
    options: MemberReachabilityOptions = {},
  ) {
    super();
    this.intervalMs = options.intervalMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.threshold = Math.max(1, options.failuresBeforeUnreachable ?? 2);
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
    this.tick();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const state of this.states.values()) this.abort(state);
  }

  /** Member name → wall-clock ms since when it has been unreachable; a fresh object. */
  unreachable(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const [name, state] of this.states) if (state.unreachableSince !== null) result[name] = state.unreachableSince;
    return result;
  }

  private tick(): void {
    let changed = false;
    const current = new Map(this.members().map((m) => [m.name, m]));
    for (const [name, state] of this.states) {
      const member = current.get(name);
      // A member that left, or moved to another address, starts over: what we knew was about another endpoint.
      if (member === undefined || member.host !== state.host || member.port !== state.port) {
        this.abort(state);
        this.states.delete(name);
        if (state.unreachableSince !== null) changed = true;
      }
    }
    for (const member of current.values()) {
      let state = this.states.get(member.name);
      if (state === undefined) {
        state = { host: member.host, port: member.port, failures: 0, firstFailureAt: 0, unreachableSince: null, inFlight: null, timeout: null, due: false };
        this.states.set(member.name, state);
      }
      // A timeout as long as the interval would otherwise skip every other tick and halve the probe rate.
      if (state.inFlight === null) this.probe(state);
      else state.due = true;
    }
    if (changed) this.emit('change');
  }

  private probe(state: MemberState): void {
    const socket = connect({ host: state.host, port: state.port });
    state.inFlight = socket;
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      clearTimeout(timer);
      // Aborted by stop() or by the member leaving: the result is about nothing we still track.
      if (state.inFlight !== socket) return;
      state.inFlight = null;
      state.timeout = null;
      this.record(state, ok);
      if (state.due && this.timer !== null) {
        state.due = false;
        this.probe(state);
      }
    };
    socket.once('connect', () => settle(true));
    socket.on('error', () => settle(false));
    const timer = setTimeout(() => settle(false), this.timeoutMs);
    timer.unref();
    state.timeout = timer;
  }

  private record(state: MemberState, ok: boolean): void {
    if (ok) {
      const was = state.unreachableSince;
      state.failures = 0;
      state.unreachableSince = null;
      if (was !== null) this.emit('change');
      return;
    }
    // The failure is dated when it is observed (after the timeout for a dropped SYN), not when the probe began.
    if (state.failures === 0) state.firstFailureAt = Date.now();
    state.failures += 1;
    if (state.unreachableSince === null && state.failures >= this.threshold) {
      state.unreachableSince = state.firstFailureAt;
      this.emit('change');
    }
  }

  private abort(state: MemberState): void {
    const socket = state.inFlight;
    state.inFlight = null;
    state.due = false;
    if (state.timeout !== null) clearTimeout(state.timeout);
    state.timeout = null;
    // Its 'error' listener stays attached, so nothing emitted while it closes goes unhandled.
    socket?.destroy();
  }
}
