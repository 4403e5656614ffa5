/**
 * The bundled demo upstream: a small copy of Cilium's Star Wars `deathstar` API
 * (quay.io/cilium/starwars), so `npm start` shows the L7 policy at work without
 * a cluster. Same routes and answers as the original.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const API = {
  name: 'Death Star',
  hostname: 'deathstar',
  model: 'DS-1 Orbital Battle Station',
  manufacturer: 'Imperial Department of Military Research, Sienar Fleet Systems',
  cost_in_credits: '1000000000000',
  length: '120000',
  crew: '342953',
  passengers: '843342',
  cargo_capacity: '1000000000000',
  hyperdrive_rating: '4.0',
  starship_class: 'Deep Space Mobile Battlestation',
  api: ['GET   /v1', 'GET   /v1/healthz', 'POST  /v1/request-landing', 'PUT   /v1/cargobay', 'GET   /v1/hyper-matter-reactor/status', 'PUT   /v1/exhaust-port'],
};

const PANIC = `Panic: deathstar exploded

goroutine 1 [running]:
main.HandleGarbage(0x2080c3f50, 0x2, 0x4, 0x425c0, 0x5, 0xa)
        /code/src/github.com/empire/deathstar/
        temp.go:9 +0x64
main.main()
        /code/src/github.com/empire/deathstar/
        temp.go:5 +0x85
`;

export function startDeathstar(port = 18080, host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const route = `${req.method} ${req.url}`;
    req.resume();
    const send = (code: number, body: string, type = 'text/plain') => {
      res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    switch (route) {
      case 'GET /v1':
      case 'GET /v1/':
        return send(200, JSON.stringify(API, null, 2) + '\n', 'application/json');
      case 'GET /v1/healthz':
        return send(200, 'OK\n');
      case 'POST /v1/request-landing':
        return send(200, 'Ship landed\n');
      case 'PUT /v1/cargobay':
        return send(200, 'Cargo loaded\n');
      case 'GET /v1/hyper-matter-reactor/status':
        return send(200, 'Status: operational\n');
      case 'PUT /v1/exhaust-port':
        return send(503, PANIC);
      default:
        return send(404, 'Not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
