/**
 * `observe -o compact` against Hubble's own printer tests (cilium/cilium
 * hubble/pkg/printer/printer_test.go, TestPrinter_WriteProtoFlow compact cases and
 * Test_getHostNames), the flows written as our JSON records. Cases for options we do
 * not offer (node names in the line, colour, tab/dict output) are left out.
 */
import t from 'tap';
import { compactLine } from '../../src/cli/observe.js';

// printer_test.go `f`, as protojson writes it.
const f = {
  time: '1970-01-01T00:20:34.567800Z',
  verdict: 'DROPPED',
  IP: { source: '1.1.1.1', destination: '2.2.2.2' },
  l4: { TCP: { source_port: 31793, destination_port: 8080 } },
  source: { identity: 4 },
  destination: { identity: 12345 },
  Type: 'L3_L4',
  node_name: 'k8s1',
  event_type: { type: 1, sub_type: 133 },
  is_reply: false,
  Summary: 'TCP Flags: SYN',
};

t.test('printer_test.go TestPrinter_WriteProtoFlow compact cases', async (t) => {
  t.equal(compactLine(f), 'Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)', 'compact');
  t.equal(compactLine({ ...f, is_reply: true }), 'Jan  1 00:20:34.567: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) Policy denied DROPPED (TCP Flags: SYN)', 'compact-reply');
  const { is_reply: _drop, ...unknown } = f;
  t.equal(compactLine(unknown), 'Jan  1 00:20:34.567: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)', 'compact-direction-unknown');
  t.equal(
    compactLine({ ...unknown, event_type: { type: 5 }, traffic_direction: 'EGRESS' }),
    'Jan  1 00:20:34.567: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED (TCP Flags: SYN)',
    'compact-policy-verdict-denied',
  );
  const kafka = {
    ...f,
    Type: 'L7',
    l7: { type: 'REQUEST', latency_ns: '10', kafka: { api_key: '1234', correlation_id: 1, topic: 'my-topic\u001b[30mblack\u001b[0m\u001b\r' } },
    Summary: "Kafka request 1234 correlation id 1 topic 'my-topic\u001b[30mblack\u001b[0m\u001b\r'",
  };
  t.equal(
    compactLine(kafka),
    "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) kafka-request DROPPED (Kafka request 1234 correlation id 1 topic 'my-topic^[[30mblack^[[0m^[\\r')",
    'compact-terminal-escaped (ESC and CR from a record never reach the terminal)',
  );
});

t.test('printer_test.go Test_getHostNames (as the two ends of the compact line)', async (t) => {
  const ends = (flow: Record<string, unknown>) => {
    const line = compactLine({ time: '1970-01-01T00:20:34.567800Z', is_reply: false, ...flow });
    const m = /^.{19}: (.*) \(\S+\) -> (.*) \(\S+\) /.exec(line);
    return m ? [m[1], m[2]] : line;
  };
  t.same(ends({}), ['', ''], 'nil ip');
  t.same(ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' } }), ['1.1.1.1', '2.2.2.2'], 'valid ips');
  t.same(ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' }, source: { namespace: 'srcns', pod_name: 'srcpod' }, destination: { namespace: 'dstns', pod_name: 'dstpod' } }), ['srcns/srcpod', 'dstns/dstpod'], 'valid ips/endpoints');
  t.same(ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' }, l4: { UDP: { source_port: 55555, destination_port: 53 } } }), ['1.1.1.1:55555', '2.2.2.2:53'], 'valid udp');
  t.same(ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' }, l4: { SCTP: { source_port: 55555, destination_port: 5060 } } }), ['1.1.1.1:55555', '2.2.2.2:5060'], 'valid sctp');
  t.same(
    ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' }, l4: { TCP: { source_port: 55555, destination_port: 80 } }, source_service: { name: 'xwing', namespace: 'default' }, destination_service: { name: 'tiefighter', namespace: 'deathstar' } }),
    ['default/xwing:55555', 'deathstar/tiefighter:80'],
    'valid tcp service',
  );
  t.same(ends({ IP: { source: '1.1.1.1', destination: '2.2.2.2' }, l4: { TCP: { source_port: 54321, destination_port: 65432 } }, source_names: ['a'], destination_names: ['b'] }), ['a:54321', 'b:65432'], 'dns');
  // Go's net.JoinHostPort, printer.go Hostname.
  t.same(ends({ IP: { source: 'fd00::1', destination: 'fd00::2' }, l4: { TCP: { source_port: 1, destination_port: 80 } } }), ['[fd00::1]:1', '[fd00::2]:80'], 'IPv6 (JoinHostPort)');
});
