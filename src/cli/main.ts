#!/usr/bin/env node
// Entry point of the `l7warden` binary; everything else is in commands.ts so tests can call main().
import { main } from './commands.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
