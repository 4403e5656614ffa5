/**
 * Client options Node honours but @types/node does not list: tls.connect and
 * http2.connect hand their options to net.connect, so `localAddress` binds the
 * client's source address (how tests tell clients apart: 127.0.0.10, .11, …).
 */
export {};
declare module 'node:tls' {
  interface ConnectionOptions {
    localAddress?: string;
  }
}
declare module 'node:http2' {
  interface ClientSessionOptions {
    localAddress?: string;
  }
}
declare module 'dns-packet' {
  // decode() sets the response code's name (NOERROR, REFUSED, …); @types/dns-packet omits it.
  interface Packet {
    rcode?: string;
  }
}
