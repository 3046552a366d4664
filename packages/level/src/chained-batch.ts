import { AbstractChainedBatch, AbstractSublevel } from 'abstract-level';
import { type LevelBatchOp, type LevelData, ownValue } from './level-store.js';

/** What the chained batch needs of its database: abstract-level's private `_batch` (the root's or a sublevel's). */
interface BatchTarget {
  _batch(operations: LevelBatchOp[], options: unknown): Promise<void>;
}

const ChainedBatchBase = AbstractChainedBatch as unknown as new (db: unknown, options: { add: boolean }) => AbstractChainedBatch<
  unknown,
  LevelData,
  LevelData
>;

/**
 * abstract-level's default chained batch, except that a value buffer is copied when `put()` is called: level code
 * (and classic-level, which copies there) may refill the buffer for the next `put()` before `write()`, and the
 * engine reads value bytes only while the batch is stored.
 */
export class VdeChainedBatch extends ChainedBatchBase {
  #operations: LevelBatchOp[] = [];

  constructor(db: unknown) {
    super(db, { add: true });
  }

  _add(op: LevelBatchOp): void {
    if (op.type === 'put') op.value = ownValue(op.value);
    this.#operations.push(op);
  }

  _clear(): void {
    this.#operations = [];
  }

  async _write(options: unknown): Promise<void> {
    await (this.db as BatchTarget)._batch(this.#operations, options);
  }
}

const SublevelBase = AbstractSublevel as unknown as new (db: unknown, name: string, options: unknown) => AbstractSublevel<
  unknown,
  LevelData,
  unknown,
  unknown
>;

/** abstract-level's sublevel with VdeChainedBatch (and sublevels of its own kind). */
export class VdeSublevel extends SublevelBase {
  _chainedBatch(): VdeChainedBatch {
    return new VdeChainedBatch(this);
  }

  _sublevel(name: string, options: unknown): VdeSublevel {
    return new VdeSublevel(this, name, options);
  }
}
