/**
 * `l7warden demo` (what `npm start` runs): the bundled Star Wars deathstar API on the
 * demo listener's upstream address, l7warden in front of it with config/, and the
 * exact commands to try printed first. Flow records follow on stdout.
 */
import { isIPv6 } from 'node:net';
import { loadConfigDir } from '../config/load.js';
import { formatIssue } from '../config/issues.js';
import type { IngressListener } from '../config/proxy-config.js';
import { startDeathstar } from '../demo/deathstar.js';
import { ConfigInvalid, startProxy } from './run.js';
import { EXIT, parse, type Io } from './args.js';

export async function runDemo(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string', short: 'c', default: 'config' } });
  const dir = values.config as string;
  const loaded = await loadConfigDir(dir);
  const listener = loaded.docs.proxyConfig?.spec.listeners.find((l): l is IngressListener => l.mode === 'ingress');
  if (loaded.errors.length > 0 || !listener) {
    for (const e of loaded.errors) io.err(formatIssue(e));
    if (!listener) io.err(`${dir}: the demo needs a ProxyConfig with an ingress listener`);
    return EXIT.invalid;
  }
  const api = await startDeathstar(listener.upstream.port, listener.upstream.host);
  let proxy;
  try {
    proxy = await startProxy({ configDir: dir });
  } catch (err) {
    api.server.close();
    if (err instanceof ConfigInvalid) {
      for (const e of err.issues) io.err(formatIssue(e));
      return EXIT.invalid;
    }
    throw err;
  }
  const hostPort = (host: string, port: number) => (isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);
  const url = `http://${hostPort(listener.host, listener.port)}`;
  const lines = [
    `l7warden demo: the deathstar API on ${listener.upstream.host}:${api.port}, behind l7warden on ${hostPort(listener.host, listener.port)}`,
    `policy: CiliumNetworkPolicy default/rule1 (${dir}/sw_l3_l4_l7_policy.yaml): org=empire may POST /v1/request-landing`,
    '',
    'As tiefighter (127.0.0.10, org=empire), allowed:',
    `  curl -s --interface 127.0.0.10 -X POST ${url}/v1/request-landing`,
    'As tiefighter, denied at L7 (403 Access denied):',
    `  curl -s -i --interface 127.0.0.10 -X PUT ${url}/v1/exhaust-port`,
    'As xwing (127.0.0.11, org=alliance), denied at L3/L4 (403):',
    `  curl -s -i --interface 127.0.0.11 -X POST ${url}/v1/request-landing`,
    'The same questions without traffic:',
    `  node dist/cli/main.js explain --from default/tiefighter --to default/deathstar --method PUT --path /v1/exhaust-port`,
    '',
    `health: curl -s http://${proxy.admin ? hostPort(proxy.admin.address, proxy.admin.port) : '(no admin)'}/readyz`,
    'Flow records (JSON lines) follow. Ctrl-C stops.',
    '',
  ];
  for (const l of lines) io.err(l);
  return new Promise<number>((resolve) => {
    const stop = () => {
      api.server.close();
      proxy.close().then(
        () => resolve(EXIT.ok),
        () => resolve(EXIT.ok),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
