/**
 * One `abort` listener per caller's signal, however many operations of this engine wait on it. A caller that passes
 * one signal (a shutdown signal, a request's signal) to many concurrent reads, streams or streamed stores used to
 * add a listener per operation, and Node printed `MaxListenersExceededWarning: Possible EventTarget memory leak
 * detected` from the 11th on, although each listener was removed when its operation ended.
 *
 * `onAbort(signal, fn)` runs `fn` once when `signal` aborts, unless the returned `detach` ran first. Callbacks run in
 * the order they were added; one detached while an abort is being dispatched is not called (as a removed listener
 * would not be). The last detach removes the signal's listener.
 */
interface Watch {
  readonly callbacks: Set<() => void>;
  readonly listener: () => void;
}

const watches = new WeakMap<AbortSignal, Watch>();

export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let w = watches.get(signal);
  if (w === undefined) {
    const callbacks = new Set<() => void>();
    const listener = (): void => {
      watches.delete(signal);
      for (const cb of Array.from(callbacks)) {
        if (!callbacks.delete(cb)) continue;
        try {
          cb();
        } catch (error) {
          // As a throwing listener of its own would: reported, and the other callbacks still run.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    };
    signal.addEventListener('abort', listener, { once: true });
    w = { callbacks, listener };
    watches.set(signal, w);
  }
  const watch = w;
  const callback = (): void => fn();
  watch.callbacks.add(callback);
  return () => {
    if (!watch.callbacks.delete(callback) || watch.callbacks.size > 0) return;
    if (watches.get(signal) === watch) {
      watches.delete(signal);
      signal.removeEventListener('abort', watch.listener);
    }
  };
}
