/**
 * l7warden command line: a thin dispatcher. Each subcommand lives in its own module
 * and returns an exit code (0 ok, 1 invalid input or config, 2 usage).
 */
import { WardenError } from '../core/errors.js';
import { EXIT, processIo, type Io } from './args.js';

type Command = (argv: readonly string[], io: Io) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  run: { summary: 'run every listener in a config directory', load: async () => (await import('./run.js')).runRun },
  check: { summary: 'validate a config directory', load: async () => (await import('./check.js')).runCheck },
  demo: { summary: 'the Star Wars demo: deathstar API behind l7warden (npm start)', load: async () => (await import('./demo.js')).runDemo },
  certs: { summary: 'make a CA and leaf certificates into certs/', load: async () => (await import('./certs.js')).runCerts },
  explain: { summary: 'trace a request through the policy without traffic', load: async () => (await import('./explain.js')).runExplain },
  observe: { summary: 'show flow records from the admin stream or a flow log, filtered like hubble observe', load: async () => (await import('./observe.js')).runObserve },
  replay: { summary: 're-decide recorded flows under a policy directory; list the verdicts that change', load: async () => (await import('./replay.js')).runReplay },
};

function usage(io: Io): void {
  io.err('usage: l7warden <command> [options]');
  for (const [name, c] of Object.entries(COMMANDS)) io.err(`  ${name.padEnd(8)} ${c.summary}`);
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    usage(io);
    return name ? EXIT.ok : EXIT.usage;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`l7warden: unknown command ${JSON.stringify(name)}`);
    usage(io);
    return EXIT.usage;
  }
  try {
    return await (await cmd.load())(rest, io);
  } catch (err) {
    if (err instanceof WardenError) {
      io.err(`l7warden ${name}: ${err.message}`);
      return err.code === 'L7W_ERR_USAGE' ? EXIT.usage : EXIT.invalid;
    }
    throw err;
  }
}
