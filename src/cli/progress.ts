/**
 * A progress bar on stderr, drawn only when stderr is a terminal (in a pipe or a
 * log it would be noise). It shows counts and never a name or a value.
 */

/** Advances and finishes a progress display. */
export interface Progress {
  tick(): void;
  done(): void;
}

const WIDTH = 30;

/** A bar for `total` steps labelled `label`, on `stream` (stderr by default). */
export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total === 0) return { tick() {}, done() {} };
  let count = 0;
  const draw = () => {
    const filled = Math.round((count / total) * WIDTH);
    stream.write(`\r${label} [${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${count}/${total}`);
  };
  draw();
  return {
    tick() {
      count += 1;
      draw();
    },
    done() {
      stream.write("\r\u001b[2K");
    },
  };
}
