/**
 * Bench upstream for h2c:// listeners: a gRPC-like node:http2 server. Each stream's
 * request body is read to its end, then answered 200 application/grpc with one
 * 7-byte message frame and trailers (grpc-status 0). Prints `h2c <port>`.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const MSG = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);
const server = http2.createServer();
server.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.resume();
  stream.on('end', () => {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }));
    stream.end(MSG);
  });
});
server.listen(0, '127.0.0.1', () => console.log(`h2c ${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
