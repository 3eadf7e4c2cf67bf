// k6 gives every script a console (log, info, warn, error, debug), which
// @types/k6 does not declare and "lib": ["es2020"] rightly leaves out; this
// is the whole of what the scripts may assume beyond @types/k6.
declare const console: {
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
  debug(...args: unknown[]): void;
};
