// broker.test.mjs: which gRPC targets the plugin speaks plaintext to, when
// it speaks TLS instead and with what, tested on the built dist/broker.js.
// Run with `npm test`, which builds first. The targets are only parsed,
// never dialled, but for the handshake tests at the end, which dial only a
// server they start on 127.0.0.1. examples/node/spawn.test.js holds the
// same plaintext table for spawn.js, whose rule this plugin mirrors. The
// certificates are testdata/'s (testdata/make-certs.sh).
import assert from "node:assert";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { BrokerError, credentialsFor, spawnJob } from "../dist/broker.js";

const TESTDATA = fileURLToPath(new URL("./testdata/", import.meta.url));
const pem = (name) => join(TESTDATA, name);

// tmp holds the files a test writes: a token, files that are not PEM.
const tmp = mkdtempSync(join(tmpdir(), "airlock-plugin-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

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
    withEnv({}, () => {
      assert.strictEqual(credentialsFor(target)._isSecure(), false);
      assert.strictEqual(credentialsFor(target, {})._isSecure(), false, "an empty tls is no TLS");
    });
  });
}

for (const [target, host, why] of REFUSED) {
  test(`no plaintext to ${target}: ${why}`, () => {
    withEnv({}, () =>
      assert.throws(
        () => credentialsFor(target),
        (err) => {
          assert.match(err.message, new RegExp(`^airlock: target ${escape(target)}: .*${escape(host)}`));
          assert.match(err.message, /set tls\.caFile in the plugin config to use TLS/);
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

// With tls.caFile, TLS to every target: beyond loopback, where plaintext is
// refused, and on loopback and the socket too, since TLS was asked for.
const CA = { caFile: pem("ca.crt") };
const MTLS = { caFile: pem("ca.crt"), certFile: pem("client.crt"), keyFile: pem("client.key") };

const TLS_TARGETS = [
  ["dns:///airlock.airlock.svc.cluster.local:7443", "the headless Service deploy/kubernetes makes"],
  ["airlock.example.com:7443", "a name that is not localhost"],
  ["10.0.0.1:7443", "an address off this host"],
  ["ipv4:127.0.0.1:1,10.0.0.1:2", "a list with one address off this host"],
  ["dns://8.8.8.8/localhost:7443", "localhost as a DNS server elsewhere answers"],
  ["127.0.0.1:7777", "loopback, where plaintext would do"],
  ["localhost:7777", "localhost, where plaintext would do"],
  ["[::1]:7777", "IPv6 loopback"],
  ["unix:///run/airlock/airlock.sock", "a unix socket"],
];

for (const [target, why] of TLS_TARGETS) {
  test(`TLS to ${target} with tls.caFile: ${why}`, () => {
    withEnv({}, () => {
      assert.strictEqual(credentialsFor(target, CA)._isSecure(), true, "tls.caFile");
      assert.strictEqual(credentialsFor(target, MTLS)._isSecure(), true, "tls.caFile, certFile, keyFile");
    });
  });
}

// notPEM is a file whose bytes must never show in an error.
const MARKER = "NOT-A-PEM-3f9c1d";
const notPEM = join(tmp, "not-pem");
writeFileSync(notPEM, `${MARKER}\n`);
const aDirectory = join(tmp, "a-directory");
mkdirSync(aDirectory);

// Settings that are refused, for any target: never plaintext instead, even
// where plaintext would be allowed. [what, tls, the error's pattern]
const TLS_REFUSED = [
  ["a certificate without its key", { caFile: pem("ca.crt"), certFile: pem("client.crt") }, /^airlock: tls\.certFile is set without tls\.keyFile/],
  ["a key without its certificate", { caFile: pem("ca.crt"), keyFile: pem("client.key") }, /^airlock: tls\.keyFile is set without tls\.certFile/],
  ["a certificate without its key, nor a CA", { certFile: pem("client.crt") }, /^airlock: tls\.certFile is set without tls\.keyFile/],
  ["a client certificate without a CA", { certFile: pem("client.crt"), keyFile: pem("client.key") }, /^airlock: .*without tls\.caFile/],
  ["a CA file that does not exist", { caFile: join(tmp, "missing.crt") }, /^airlock: tls\.caFile: cannot read .*missing\.crt: ENOENT$/],
  ["a CA path that is a directory", { caFile: aDirectory }, /^airlock: tls\.caFile: cannot read .*: EISDIR$/],
  ["a CA file that is not PEM", { caFile: notPEM }, /^airlock: tls\.caFile .*: no PEM certificate in it$/],
  ["an empty CA path", { caFile: "" }, /^airlock: tls\.caFile is empty/],
  ["a certificate file that does not exist", { ...MTLS, certFile: join(tmp, "missing.crt") }, /^airlock: tls\.certFile: cannot read .*: ENOENT$/],
  ["a key file that does not exist", { ...MTLS, keyFile: join(tmp, "missing.key") }, /^airlock: tls\.keyFile: cannot read .*: ENOENT$/],
  ["a key file that is not PEM", { ...MTLS, keyFile: notPEM }, /^airlock: tls\.certFile .* and tls\.keyFile .* are not a PEM certificate and its private key/],
  ["a certificate file that is not PEM", { ...MTLS, certFile: notPEM }, /^airlock: tls\.certFile .* and tls\.keyFile .* are not a PEM certificate and its private key/],
  ["a key that is another certificate's", { ...MTLS, keyFile: pem("server.key") }, /^airlock: tls\.certFile .* and tls\.keyFile .*: .*key values mismatch/],
  ["an empty key path", { ...MTLS, keyFile: "" }, /^airlock: tls\.keyFile is empty/],
];

for (const [what, tls, want] of TLS_REFUSED) {
  test(`no TLS, and no plaintext, with ${what}`, () => {
    withEnv({}, () => {
      for (const target of ["airlock.example.com:7443", "127.0.0.1:7777", "unix:///run/airlock/airlock.sock"]) {
        assert.throws(
          () => credentialsFor(target, tls),
          (err) => {
            assert.match(err.message, want, target);
            assert.ok(!err.message.includes(MARKER), `${target}: the error holds the file's contents: ${err.message}`);
            return true;
          },
        );
      }
    });
  });
}

// The handshake tests: a Broker on 127.0.0.1 serving testdata/server.crt,
// which testdata/ca.crt signed for 127.0.0.1, and the real spawnJob.
const TOKEN = "test-token-6b1e";
const tokenFile = join(tmp, "token");
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });

const REQUEST = {
  profile: "",
  task: { name: "extract_text", params: {}, instructions: "" },
  content: [{ data: Buffer.from("hello"), media_type: "text/plain", source: "" }],
  result_schema: "",
};

// startBroker serves Spawn over TLS on 127.0.0.1, requiring a client
// certificate that testdata/ca.crt signed when mtls is set. calls holds the
// authorization of every Spawn that reached the handler.
async function startBroker({ mtls }) {
  const def = protoLoader.loadSync("airlock/v1/broker.proto", {
    includeDirs: [fileURLToPath(new URL("../dist/proto/", import.meta.url))],
    keepCase: true,
    enums: String,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const { Broker } = grpc.loadPackageDefinition(def).airlock.v1;
  const calls = [];
  const server = new grpc.Server();
  server.addService(Broker.service, {
    Spawn(call, cb) {
      calls.push(call.metadata.get("authorization")[0]);
      cb(null, {
        job_id: "tls-test",
        verdict: "VERDICT_OK",
        result: { fields: { text: { stringValue: "hello" } } },
      });
    },
  });
  const creds = grpc.ServerCredentials.createSsl(
    mtls ? readFileSync(pem("ca.crt")) : null,
    [{ private_key: readFileSync(pem("server.key")), cert_chain: readFileSync(pem("server.crt")) }],
    mtls,
  );
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, calls, close: () => server.forceShutdown() };
}

function spawnWith(address, tls) {
  return spawnJob({ address, tokenFile, timeoutSeconds: 10, tls }, REQUEST);
}

// refusedBeforeTheBroker asserts that a call failed as UNAVAILABLE, the
// connection never made, so that nothing reached the handler.
async function refusedBeforeTheBroker(broker, promise) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof BrokerError, String(err));
    assert.strictEqual(err.code, "UNAVAILABLE", err.message);
    return true;
  });
  assert.deepStrictEqual(broker.calls, [], "a call reached the broker");
}

test("TLS handshake: tls.caFile verifies the broker, and the token goes over TLS", async () => {
  const broker = await startBroker({ mtls: false });
  try {
    const resp = await spawnWith(broker.address, CA);
    assert.strictEqual(resp.verdict, "VERDICT_OK");
    assert.deepStrictEqual(resp.result, { text: "hello" });
    assert.deepStrictEqual(broker.calls, [`Bearer ${TOKEN}`]);
  } finally {
    broker.close();
  }
});

test("TLS handshake: a broker whose certificate another CA signed is refused, and gets no token", async () => {
  const broker = await startBroker({ mtls: false });
  try {
    await refusedBeforeTheBroker(broker, spawnWith(broker.address, { caFile: pem("other-ca.crt") }));
  } finally {
    broker.close();
  }
});

test("TLS handshake: a plugin without tls does not speak plaintext to a TLS broker on loopback", async () => {
  const broker = await startBroker({ mtls: false });
  try {
    await assert.rejects(spawnWith(broker.address, undefined), BrokerError);
    assert.deepStrictEqual(broker.calls, []);
  } finally {
    broker.close();
  }
});

test("mTLS handshake: a broker that asks for a client certificate refuses none, and takes tls.certFile's", async () => {
  const broker = await startBroker({ mtls: true });
  try {
    await refusedBeforeTheBroker(broker, spawnWith(broker.address, CA));
    const resp = await spawnWith(broker.address, MTLS);
    assert.strictEqual(resp.verdict, "VERDICT_OK");
    assert.deepStrictEqual(broker.calls, [`Bearer ${TOKEN}`]);
  } finally {
    broker.close();
  }
});

test("TLS: the files are read on each call, so a replaced CA file takes effect at the next", async () => {
  const broker = await startBroker({ mtls: false });
  const caFile = join(tmp, "rotating-ca.crt");
  try {
    writeFileSync(caFile, readFileSync(pem("other-ca.crt")));
    await refusedBeforeTheBroker(broker, spawnWith(broker.address, { caFile }));
    writeFileSync(caFile, readFileSync(pem("ca.crt")));
    const resp = await spawnWith(broker.address, { caFile });
    assert.strictEqual(resp.verdict, "VERDICT_OK");
  } finally {
    broker.close();
  }
});

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
