/** Bad command-line usage (unknown option, missing argument): exit code 2, no error code. */
export class UsageError extends Error {
  /** The command whose `--help` to suggest, if any. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}
