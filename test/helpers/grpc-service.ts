/**
 * A gRPC test service with @grpc/grpc-js and no codegen: service
 * `starwars.Deathstar` with messages as raw bytes (Buffer pass-through
 * serializers). Methods:
 *   RequestLanding  unary           echoes "landed:<req>", custom trailer x-landing: ok
 *   Scan            server-streaming sends n = req length messages "scan:i"
 *   LoadCargo       client-streaming answers "loaded:<count>"
 *   Chat            bidi            echoes each message with "echo:"
 *   Explode         unary           always fails with INTERNAL and a custom trailer
 *   ExhaustPort     unary           answers "opened" (the policy denies it)
 * `calls` records every method the server actually ran.
 */
import * as grpc from '@grpc/grpc-js';

const id = (b: Buffer) => b;
const MD = (n: string, s: 'unary' | 'ss' | 'cs' | 'bidi') => ({
  path: `/starwars.Deathstar/${n}`,
  requestStream: s === 'cs' || s === 'bidi',
  responseStream: s === 'ss' || s === 'bidi',
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
});

export const DEATHSTAR_SERVICE = {
  RequestLanding: MD('RequestLanding', 'unary'),
  Scan: MD('Scan', 'ss'),
  LoadCargo: MD('LoadCargo', 'cs'),
  Chat: MD('Chat', 'bidi'),
  Explode: MD('Explode', 'unary'),
  ExhaustPort: MD('ExhaustPort', 'unary'),
} as unknown as grpc.ServiceDefinition;

export const DeathstarClient = grpc.makeGenericClientConstructor(DEATHSTAR_SERVICE, 'Deathstar');

export interface GrpcServer {
  readonly port: number;
  readonly calls: string[];
  close(): Promise<void>;
}

export async function startGrpcServer(): Promise<GrpcServer> {
  const calls: string[] = [];
  const server = new grpc.Server();
  const trailer = (k: string, v: string) => {
    const m = new grpc.Metadata();
    m.set(k, v);
    return m;
  };
  server.addService(DEATHSTAR_SERVICE, {
    RequestLanding(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      calls.push('RequestLanding');
      cb(null, Buffer.from(`landed:${call.request.toString()}`), trailer('x-landing', 'ok'));
    },
    Scan(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      calls.push('Scan');
      const n = Math.min(call.request.length, 50);
      for (let i = 0; i < n; i++) call.write(Buffer.from(`scan:${i}`));
      call.end(trailer('x-scan', 'done'));
    },
    LoadCargo(call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      calls.push('LoadCargo');
      let count = 0;
      call.on('data', () => count++);
      call.on('end', () => cb(null, Buffer.from(`loaded:${count}`)));
    },
    Chat(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      calls.push('Chat');
      call.on('data', (m: Buffer) => call.write(Buffer.from(`echo:${m.toString()}`)));
      call.on('end', () => call.end());
    },
    Explode(_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      calls.push('Explode');
      cb({ code: grpc.status.INTERNAL, details: 'deathstar exploded', metadata: trailer('x-panic', 'yes') });
    },
    ExhaustPort(_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      calls.push('ExhaustPort');
      cb(null, Buffer.from('opened'));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    calls,
    close: () =>
      new Promise((r) => {
        server.tryShutdown(() => r());
        setTimeout(() => {
          server.forceShutdown();
          r();
        }, 1000).unref();
      }),
  };
}

/** A client for `port` (grpc-js cannot pick its source address: put a relay in front to act as a pod). */
export function grpcClient(port: number): grpc.Client {
  return new DeathstarClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'deathstar' });
}
