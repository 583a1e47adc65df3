// broker.test.mjs: which gRPC targets the plugin speaks plaintext to, tested
// on the built dist/broker.js. Run with `npm test`, which builds first. The
// targets are only parsed, never dialled. examples/node/spawn.test.js holds
// the same table for spawn.js, whose rule this plugin mirrors.
import assert from "node:assert";
import { test } from "node:test";
import { credentialsFor } from "../dist/broker.js";

// Plaintext only to a unix socket, or when every host the target names is
// 127.0.0.0/8, ::1 or localhost as this host resolves it.
const PLAINTEXT = [
  ["unix:///run/airlock/airlock.sock", "a unix socket"],
  ["unix:airlock.sock", "a relative unix socket"],
  ["127.0.0.1:7777", "loopback host:port"],
  ["localhost:7777", "localhost:port"],
  ["127.0.0.2:7777", "all of 127.0.0.0/8 is loopback"],
  ["[::1]:7777", "IPv6 loopback"],
  ["ipv4:127.0.0.1:1,127.0.0.2:2", "a list of loopback addresses"],
  ["ipv6:[::1]:7443", "an IPv6 list of one"],
  ["dns:///localhost:7443", "localhost through the local resolver"],
  ["dns:localhost:7443", "dns: without //"],
  ["dns://8.8.8.8/127.0.0.1:7443", "an IP literal is never looked up, so the DNS server named is never asked"],
];

const REFUSED = [
  ["ipv4:127.0.0.1:1,10.0.0.1:2", "10.0.0.1", "one address of the list is not loopback"],
  ["dns://8.8.8.8/localhost:7443", "8.8.8.8", "what a DNS server elsewhere answers for localhost need not be loopback"],
  ["airlock.example.com:7443", "airlock.example.com", "a name that is not localhost"],
  ["dns:///airlockd.airlock.svc.cluster.local:7443", "airlockd.airlock.svc.cluster.local", "a headless Service"],
  ["127.0.0.1.example.com:7443", "127.0.0.1.example.com", "a name that starts like a loopback address"],
  ["10.0.0.1:7443", "10.0.0.1", "a private address is still off this host"],
  ["[::2]:7443", "::2", "an IPv6 address that is not ::1"],
];

// withEnv runs fn with no GRPC_NODE_* settings but env's.
function withEnv(env, fn) {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) if (k.startsWith("GRPC_NODE_")) delete process.env[k];
  Object.assign(process.env, env);
  try {
    return fn();
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

for (const [target, why] of PLAINTEXT) {
  test(`plaintext to ${target}: ${why}`, () => {
    withEnv({}, () => assert.doesNotThrow(() => credentialsFor(target)));
  });
}

for (const [target, host, why] of REFUSED) {
  test(`no plaintext to ${target}: ${why}`, () => {
    withEnv({}, () =>
      assert.throws(
        () => credentialsFor(target),
        (err) => {
          assert.match(err.message, new RegExp(`^airlock: target ${escape(target)}: .*${escape(host)}`));
          assert.match(err.message, /TLS/);
          return true;
        },
      ),
    );
  });
}

test("no plaintext to localhost when grpc-js asks DNS servers instead of /etc/hosts", () => {
  withEnv({ GRPC_NODE_USE_ALTERNATIVE_RESOLVER: "true" }, () => {
    assert.throws(() => credentialsFor("localhost:7443"), /^Error: airlock: target localhost:7443: .*GRPC_NODE_USE_ALTERNATIVE_RESOLVER/);
    assert.doesNotThrow(() => credentialsFor("127.0.0.1:7443"));
  });
});

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
