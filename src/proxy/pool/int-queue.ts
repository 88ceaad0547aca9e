/**
 * A first-in first-out queue of small integers that keeps its storage: a server connection's answers owed
 * (ServerConn's expect list) take one push and one shift per statement, and a plain array emptied with
 * `length = 0` gave its storage back and grew it again every time.
 */
export class IntQueue {
  private items: Int32Array;
  private head = 0;
  private tail = 0;

  constructor(initialCapacity = 16) {
    this.items = new Int32Array(Math.max(2, initialCapacity));
  }

  get length(): number {
    return this.tail - this.head;
  }

  push(value: number): void {
    if (this.tail === this.items.length) this.makeRoom();
    this.items[this.tail++] = value;
  }

  /** The oldest value, or -1 when the queue is empty. */
  peek(): number {
    return this.head < this.tail ? this.items[this.head]! : -1;
  }

  /** Takes the oldest value out, or returns -1 when the queue is empty. */
  shift(): number {
    if (this.head === this.tail) return -1;
    const value = this.items[this.head++]!;
    if (this.head === this.tail) this.head = this.tail = 0;
    return value;
  }

  /** Full up to the end of the storage: move what is queued to the front, or double the storage (a long pipeline). */
  private makeRoom(): void {
    const queued = this.tail - this.head;
    if (queued <= this.items.length / 2) {
      this.items.copyWithin(0, this.head, this.tail);
    } else {
      const grown = new Int32Array(this.items.length * 2);
      grown.set(this.items.subarray(this.head, this.tail));
      this.items = grown;
    }
    this.head = 0;
    this.tail = queued;
  }
}
