/**
 * What the proxy's forwarding code needs from a connection, whether it is a Node socket (TLS, and every
 * connection until it is logged in) or a NativeWire (plain TCP in steady state, see native-wire.ts). net.Socket
 * has all of it already.
 */
export interface Wire {
  write(data: Buffer): unknown;
  /** Writes until uncork() are sent together. */
  cork(): void;
  uncork(): void;
  /** Bytes written but not yet taken by the kernel. */
  readonly writableLength: number;
  readonly writable: boolean;
  readonly destroyed: boolean;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  /** Closes politely, after sending `data` if given. */
  end(): unknown;
  end(data: Buffer): unknown;
  /** Closes at once; unsent bytes are dropped. */
  destroy(): unknown;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}
