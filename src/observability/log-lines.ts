/**
 * Gathers the logger's lines and hands them to the destination (sonic-boom, which
 * does the writing and its edge cases) as one string per `minLength` characters.
 *
 * sonic-boom buffers by itself too (its `minLength`), but it measures the UTF-8
 * length of the text it holds on every line it is given, and that text is a chain
 * of concatenations that the measuring flattens: a copy of up to 16 KiB per line,
 * with a line per call the largest allocation of a call (allocation sampling).
 * Lines gathered in an array are joined once per batch instead: a call's line
 * costs 3.0–3.4 µs instead of 5.9–6.3 (pino to /dev/null, measured alone).
 */
export interface LineDestination {
  write(text: string): unknown;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

export interface LineBatcher {
  /** pino's stream interface: one serialized line (with its newline). */
  write(line: string): boolean;
  /** Hand over what is gathered, then let the destination write it out (pino's `logger.flush`). */
  flush(cb?: (err?: Error) => void): void;
  /** Hand over what is gathered and write it now, synchronously (at exit). */
  flushSync(): void;
  /** Hand over what is gathered, for the destination to write at once (the periodic flush). */
  drain(): void;
}

export function batchLines(destination: LineDestination, minLength: number): LineBatcher {
  let lines: string[] = [];
  let length = 0;

  function drain(): void {
    if (lines.length === 0) return;
    const text = lines.join("");
    lines = [];
    length = 0;
    destination.write(text);
  }

  return {
    write(line) {
      lines.push(line);
      length += line.length;
      if (length >= minLength) drain();
      return true;
    },
    flush(cb) {
      drain();
      destination.flush(cb);
    },
    flushSync() {
      drain();
      destination.flushSync();
    },
    drain,
  };
}
