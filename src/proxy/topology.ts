/**
 * Where `rw` connections go. The pool asks `primary()` each time it opens a server connection and listens for
 * 'change' to stop using an old primary; the static source here never changes, the etcd one (later) will.
 */
import { EventEmitter } from 'node:events';

export interface Endpoint {
  host: string;
  port: number;
}

export interface Topology {
  /** The current primary, or null while there is none (new transactions then wait). */
  primary(): Endpoint | null;
  replicas(): readonly Endpoint[];
  /**
   * True while the primary asked the proxies to drain before a switchover (etcd mode): rw pools start no new
   * transaction (they wait as if there were no primary) and let the ones in flight finish.
   */
  holdsWrites?(): boolean;
  on(event: 'change', listener: () => void): this;
  off(event: 'change', listener: () => void): this;
}

/** `--primary host:port [--replica host:port …]`: a fixed topology (PgBouncer without etcd). */
export class StaticTopology extends EventEmitter implements Topology {
  constructor(
    private readonly primaryEndpoint: Endpoint | null,
    private readonly replicaEndpoints: readonly Endpoint[] = [],
  ) {
    super();
  }

  primary(): Endpoint | null {
    return this.primaryEndpoint;
  }

  replicas(): readonly Endpoint[] {
    return this.replicaEndpoints;
  }
}
