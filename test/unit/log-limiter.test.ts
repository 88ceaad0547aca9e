/**
 * The rate limit of client-caused log lines (log-limiter.ts) and the failed-login / protocol-violation records
 * built on it (client-failures.ts), driven by a fake clock.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { ClientFailures, type FailedClient, loginFailureReason } from '../../src/proxy/client-failures.js';
import { type LimiterClock, RateLimitedLog, RateLimiter } from '../../src/proxy/log-limiter.js';
import { PgProtocolError, SQLSTATE, passwordAuthenticationFailed } from '../../src/proxy/protocol/errors.js';

/** A clock the test moves; timers fire when it passes their time. */
class FakeClock implements LimiterClock {
  t = 1_000_000;
  private timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  now(): number {
    return this.t;
  }
  setTimer(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => !x.cancelled && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
  get pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }
}

describe('RateLimiter', () => {
  it('lets the first N lines of each one-second window through and counts the rest', () => {
    const limiter = new RateLimiter(3);
    const results = [0, 1, 2, 3, 4, 999].map((t) => limiter.take(t));
    assert.deepEqual(results.map((r) => r.write), [true, true, true, false, false, false]);
    assert.equal(limiter.pending, 3);
    assert.equal(limiter.flush(999), 0, 'the window is not over');
    // The next window: its first line carries the count of the previous one.
    assert.deepEqual(limiter.take(1000), { write: true, suppressedBefore: 3 });
    assert.equal(limiter.pending, 0);
  });

  it('reports the suppressed count once, by flush when the window is over', () => {
    const limiter = new RateLimiter(1);
    limiter.take(0);
    limiter.take(10);
    limiter.take(20);
    assert.equal(limiter.flush(1000), 2);
    assert.equal(limiter.flush(5000), 0, 'already reported');
    assert.deepEqual(limiter.take(5000), { write: true, suppressedBefore: 0 });
  });

  it('refuses a limit below 1', () => {
    assert.throws(() => new RateLimiter(0), RangeError);
  });
});

describe('RateLimitedLog', () => {
  it('writes at most N lines per second of a flood, then one summary per window when it is over', () => {
    const clock = new FakeClock();
    const lines: string[] = [];
    const log = new RateLimitedLog(5, (n) => lines.push(`suppressed ${n}`), clock);
    // 100 lines in 2.5 s: 40 per second.
    for (let i = 0; i < 100; i++) {
      log.line(() => lines.push(`line ${i}`));
      clock.advance(25);
    }
    clock.advance(2000);
    const written = lines.filter((l) => l.startsWith('line')).length;
    const suppressed = lines.filter((l) => l.startsWith('suppressed')).reduce((n, l) => n + Number(l.split(' ')[1]), 0);
    assert.equal(written, 15, 'three windows of 5');
    assert.equal(written + suppressed, 100, 'every line written or counted');
    assert.equal(lines.filter((l) => l.startsWith('suppressed')).length, 3, 'one summary per window');
    assert.equal(lines.at(-1), 'suppressed 15', 'the last window is reported by the timer after the flood stopped');
    assert.equal(clock.pendingTimers, 0);
  });

  it('writes no summary when nothing was suppressed, and close() reports what is pending', () => {
    const clock = new FakeClock();
    const lines: string[] = [];
    const log = new RateLimitedLog(2, (n) => lines.push(`suppressed ${n}`), clock);
    log.line(() => lines.push('a'));
    clock.advance(5000);
    assert.deepEqual(lines, ['a']);
    for (let i = 0; i < 4; i++) log.line(() => lines.push('b'));
    log.close();
    assert.deepEqual(lines, ['a', 'b', 'b', 'suppressed 2']);
    assert.equal(clock.pendingTimers, 0);
  });

  it('reports a later window whose timer was taken by a late earlier one', () => {
    const clock = new FakeClock();
    const lines: string[] = [];
    const log = new RateLimitedLog(1, (n) => lines.push(`suppressed ${n}`), clock);
    log.line(() => lines.push('w1'));
    log.line(() => lines.push('w1'));
    // The next window starts before the first window's timer ran (a busy event loop).
    clock.t += 1500;
    log.line(() => lines.push('w2'));
    log.line(() => lines.push('w2'));
    log.line(() => lines.push('w2'));
    clock.advance(3000);
    assert.deepEqual(lines, ['w1', 'suppressed 1', 'w2', 'suppressed 2']);
  });
});

describe('ClientFailures', () => {
  const client = (over: Partial<FailedClient> = {}): FailedClient => ({
    user: 'alice',
    database: 'app',
    loggedIn: false,
    userKnown: true,
    remoteAddress: '127.0.0.1',
    remotePort: 40000,
    ...over,
  });

  function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    return { logger: pino({ level: 'info' }, stream), lines };
  }

  it('names the reason of a failed login', () => {
    assert.equal(loginFailureReason(passwordAuthenticationFailed('alice'), true), 'wrong_password');
    assert.equal(loginFailureReason(passwordAuthenticationFailed('alice'), false), 'unknown_user');
    assert.equal(loginFailureReason(new PgProtocolError('3D000', 'database "x" does not exist'), true), 'unknown_database');
    assert.equal(loginFailureReason(new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'no pg_hba.conf entry'), true), 'not_allowed');
    assert.equal(loginFailureReason(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'no more connections allowed (max_client_conn)'), true), 'too_many_clients');
    assert.equal(loginFailureReason(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'could not connect to server'), true), 'server_unavailable');
  });

  it('counts failed logins and protocol violations apart, and leaves other closes alone', async () => {
    const { logger, lines } = capture();
    const failures = new ClientFailures(logger);
    assert.equal(failures.record(client(), passwordAuthenticationFailed('alice'), true), 'failed_login');
    assert.equal(failures.record(client({ userKnown: false }), passwordAuthenticationFailed('mallory'), true), 'failed_login');
    assert.equal(failures.record(client({ loggedIn: true }), new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'invalid message length'), true), 'protocol_error');
    assert.equal(failures.record(client({ loggedIn: true }), new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'client_idle_timeout'), false), null, 'a timeout is no violation');
    assert.equal(failures.record(client({ loggedIn: true }), new PgProtocolError('57P01', 'terminating connection'), false), null);
    assert.equal(failures.failedLogins.get('wrong_password'), 1);
    assert.equal(failures.failedLogins.get('unknown_user'), 1);
    assert.equal(failures.protocolErrors, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 3);
    assert.deepEqual(
      lines.map((l) => [l.msg, l.reason ?? null, l.user, l.client]),
      [
        ['login failed', 'wrong_password', 'alice', '127.0.0.1:40000'],
        ['login failed', 'unknown_user', 'alice', '127.0.0.1:40000'],
        ['protocol violation: client connection closed', null, 'alice', '127.0.0.1:40000'],
      ],
    );
  });

  it('rate-limits each kind on its own: a login flood does not hide a protocol violation', async () => {
    const { logger, lines } = capture();
    const clock = new FakeClock();
    const failures = new ClientFailures(logger, { perSecond: 2, clock });
    for (let i = 0; i < 50; i++) failures.record(client(), passwordAuthenticationFailed('alice'), true);
    failures.record(client({ loggedIn: true }), new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'unexpected message'), true);
    clock.advance(1000);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(failures.failedLogins.get('wrong_password'), 50, 'every failure is counted');
    assert.equal(lines.filter((l) => l.msg === 'login failed').length, 2);
    assert.equal(lines.filter((l) => String(l.msg).startsWith('protocol violation')).length, 1);
    const summary = lines.find((l) => String(l.msg).startsWith('suppressed'));
    assert.equal(summary?.msg, 'suppressed 48 similar messages (failed logins)');
    assert.equal(summary?.suppressed, 48);
  });
});
