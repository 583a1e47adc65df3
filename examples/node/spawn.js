#!/usr/bin/env node
// spawn.js: run one Airlock job and print its SpawnResponse as JSON.
//
//   AIRLOCK_TOKEN_FILE=/etc/airlock/token \
//   AIRLOCK_ADDR=unix:///run/airlock/airlock.sock \
//     node spawn.js [--profile P] [--task T] [--param k=v]... [--schema FILE|none] \
//                   [--media-type TYPE] [--source URL] [--deadline SECONDS] CONTENT_FILE
//     node spawn.js [flags] --url URL
//     node spawn.js --ask "INSTRUCTIONS" [--profile P] [--model NAME] [--schema FILE] CONTENT_FILE
//
// --ask runs the agent task: a model-driven sub-agent reads the content and
// answers the instructions, as {"answer": "..."} unless --schema is given.
//
// Without --schema a job of the reference agent's tasks asks for that task's
// result shape, ../schemas/TASK.schema.json (docs/tasks.md); any other task,
// or --schema none, sends no schema, so the profile's defaultSchema applies.
//
// CONTENT_FILE is the untrusted content ("-" reads stdin). With --url
// instead, the sandbox fetches the URL itself, through its profile's egress
// allowlist, so this process never holds the bytes. The response goes
// to stdout as one JSON document, with `result` as plain JSON. Exit status:
// 0 for verdict VERDICT_OK, 3 for any other verdict (the JSON is still
// printed), 1 when the call itself failed (the gRPC status goes to stderr),
// 2 for bad usage.
//
// As a module, require('./spawn.js').spawnJob({...}) does the same call and
// resolves to the same JSON, and askJob({instructions, content, ...}) runs
// the agent task (see README.md).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's proto root. broker.proto imports only Google's
// well-known types (duration, struct, timestamp); protobufjs, which
// proto-loader loads with, carries those bundled, so the include path needs
// only this directory.
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const DEFAULT_ADDR = 'unix:///run/airlock/airlock.sock';

// SERVICE_CONFIG is how a channel spreads jobs over several brokers: a
// target such as dns:///airlockd.airlock.svc.cluster.local:7443 (every pod of
// a headless Service) or ipv4:127.0.0.1:7443,127.0.0.2:7443 resolves to many
// addresses, round_robin goes round them, and a Spawn refused with
// UNAVAILABLE (the broker drains) or RESOURCE_EXHAUSTED (it is full) is sent
// again, at most 5 attempts in all, to the next. Every attempt carries the
// same job_id. It is the Go client's (broker/client.ServiceConfig) but for
// healthCheckConfig, which @grpc/grpc-js does not implement: a draining
// broker is skipped here by its UNAVAILABLE answer and the retry, not
// beforehand. docs/scale-out.md says why a retry is safe.
const SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [{
    name: [{ service: 'airlock.v1.Broker', method: 'Spawn' }, { service: 'airlock.v1.Broker', method: 'SpawnStream' }],
    retryPolicy: {
      maxAttempts: 5,
      initialBackoff: '0.1s',
      maxBackoff: '2s',
      backoffMultiplier: 2,
      retryableStatusCodes: ['UNAVAILABLE', 'RESOURCE_EXHAUSTED'],
    },
  }],
};

// The result shapes of the reference agent's tasks, one file per task.
const SCHEMA_DIR = path.resolve(__dirname, '..', 'schemas');

// taskSchema returns the result schema of one of the reference agent's
// tasks as JSON text, or '' for another task: sending none lets the profile's
// defaultSchema apply, where a schema made for another task would refuse
// every result. The task name picks a file, so only a plain name may.
function taskSchema(task) {
  if (!/^[a-z][a-z0-9_]*$/.test(task)) return '';
  const file = path.join(SCHEMA_DIR, `${task === 'agent' ? 'answer' : task}.schema.json`);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return '';
    throw err;
  }
}

// The result schema askJob uses when none is given: the model's answer as
// one string.
const ANSWER_SCHEMA = {
  type: 'object',
  required: ['answer'],
  additionalProperties: false,
  properties: { answer: { type: 'string' } },
};

const USAGE = `usage: node spawn.js [--profile P] [--task T] [--param k=v]... [--schema FILE|none]
                     [--media-type TYPE] [--source URL] [--deadline SECONDS] CONTENT_FILE
       node spawn.js --ask INSTRUCTIONS [--profile P] [--model NAME] [--schema FILE] CONTENT_FILE

Without --schema: the task's own schema (../schemas/TASK.schema.json), or
none for a task without one; --schema none sends none, for the profile's
defaultSchema.

environment:
  AIRLOCK_TOKEN_FILE  file holding the bearer token (required)
  AIRLOCK_ADDR        broker address (default ${DEFAULT_ADDR}; or 127.0.0.1:PORT);
                      several: dns:///NAME:PORT or ipv4:ADDR:PORT,ADDR:PORT
  AIRLOCK_TLS_CA      CA bundle: use TLS (needed for a non-loopback address)
  AIRLOCK_TLS_CERT, AIRLOCK_TLS_KEY   client certificate and key for mTLS`;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { profile: 'secureclaw', task: 'summarize', params: {}, schema: null,
    mediaType: null, source: '', deadline: 300, content: null, url: '', instructions: null, model: '' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--profile': opts.profile = value(); break;
      case '--task': opts.task = value(); break;
      case '--param': {
        const kv = value();
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new UsageError(`--param ${kv}: want key=value`);
        opts.params[kv.slice(0, eq)] = kv.slice(eq + 1);
        break;
      }
      case '--schema': opts.schema = value(); break;
      case '--ask': opts.instructions = value(); opts.task = 'agent'; break;
      case '--model': opts.model = value(); break;
      case '--media-type': opts.mediaType = value(); break;
      case '--source': opts.source = value(); break;
      case '--url': opts.url = value(); break;
      case '--deadline': {
        opts.deadline = Number(value());
        if (!(opts.deadline > 0)) throw new UsageError('--deadline wants a positive number of seconds');
        break;
      }
      case '-h': case '--help': throw new UsageError('');
      default:
        if (arg.startsWith('--')) throw new UsageError(`unknown flag ${arg}`);
        if (opts.content !== null) throw new UsageError('one content file only');
        opts.content = arg;
    }
  }
  if (opts.content !== null && opts.url) throw new UsageError('give CONTENT_FILE or --url, not both');
  if (opts.content === null && !opts.url) throw new UsageError('missing CONTENT_FILE or --url');
  return opts;
}

function mediaTypeOf(file) {
  switch (path.extname(file).toLowerCase()) {
    case '.html': case '.htm': return 'text/html';
    case '.md': return 'text/markdown';
    case '.json': return 'application/json';
    default: return 'text/plain';
  }
}

function readToken(file) {
  if (!file) throw new UsageError('set AIRLOCK_TOKEN_FILE to the file holding the bearer token');
  const token = fs.readFileSync(file, 'utf8').trim();
  if (!token) throw new Error(`token file ${file} is empty`);
  return token;
}

// TARGET_SCHEMES are the schemes @grpc/grpc-js resolves. A target of any
// other scheme, or of none (127.0.0.1:7777), is a dns: name, the whole
// target its host:port (grpc-js's resolver.mapUriDefaultScheme).
const TARGET_SCHEMES = new Set(['dns', 'ipv4', 'ipv6', 'unix']);

// LOOPBACK is 127.0.0.0/8 and ::1, however spelled (::ffff:127.0.0.1 too).
const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

// targetParts splits a gRPC target into scheme, authority and path as
// grpc-js's uri-parser does, so that the hosts checked are the ones the
// channel dials: dns://8.8.8.8/localhost:7443 is {dns, 8.8.8.8,
// localhost:7443}, ipv4:127.0.0.1:1,127.0.0.2:2 is {ipv4, '', the list}.
function targetParts(target) {
  const m = /^(?:([A-Za-z0-9+.-]+):)?(?:\/\/([^/]*)\/)?(.+)$/.exec(target);
  if (m && TARGET_SCHEMES.has(m[1])) return { scheme: m[1], authority: m[2] || '', path: m[3] };
  return { scheme: 'dns', authority: '', path: target };
}

// hostOf is the host of a host:port, [v6]:port or bare host, as grpc-js's
// splitHostPort reads it, or null where grpc-js finds none.
function hostOf(hostport) {
  if (hostport.startsWith('[')) {
    const m = /^\[([^\]]*:[^\]]*)\](?::\d+)?$/.exec(hostport);
    return m ? m[1] : null;
  }
  const parts = hostport.split(':');
  if (parts.length !== 2) return hostport; // no port, or a bare IPv6 address
  return /^\d+$/.test(parts[1]) ? parts[0] : null;
}

// plaintextRefusal says why plaintext gRPC must not go to target, or
// returns '' when it may: a unix socket, or a target every host of which
// (one, or each of an ipv4: or ipv6: list) is a loopback IP address or
// localhost. localhost counts only as this host's own resolver (getaddrinfo,
// /etc/hosts) answers for it: not when the target names a DNS server to ask
// (dns://8.8.8.8/localhost:7443, whose answer is that server's to give), nor
// when GRPC_NODE_USE_ALTERNATIVE_RESOLVER has grpc-js ask DNS servers
// instead. An IP literal is never looked up, whatever server is named.
// examples/openclaw-plugin/src/broker.ts applies the same rule.
function plaintextRefusal(target) {
  const { scheme, authority, path: endpoint } = targetParts(target);
  if (scheme === 'unix') return '';
  for (const hostport of scheme === 'dns' ? [endpoint] : endpoint.split(',')) {
    const host = hostOf(hostport);
    if (host === null) return `target ${target}: ${hostport} is not a host:port`;
    const family = net.isIP(host);
    if (family !== 0) {
      if (!LOOPBACK.check(host, family === 6 ? 'ipv6' : 'ipv4')) return `target ${target}: ${host} is not loopback`;
    } else if (host !== 'localhost') {
      return `target ${target}: ${host} is not loopback`;
    } else if (authority) {
      return `target ${target}: localhost is looked up at the DNS server ${authority}, whose answer need not be loopback (dns:///localhost:PORT asks this host)`;
    } else if (process.env.GRPC_NODE_USE_ALTERNATIVE_RESOLVER === 'true') {
      return `target ${target}: with GRPC_NODE_USE_ALTERNATIVE_RESOLVER=true, grpc-js asks DNS servers, not /etc/hosts, for localhost`;
    }
  }
  return '';
}

// credentialsFor returns the channel credentials for addr: TLS with
// AIRLOCK_TLS_CA, else plaintext, which the broker speaks on its unix socket
// and on loopback only (plaintextRefusal).
function credentialsFor(addr) {
  const ca = process.env.AIRLOCK_TLS_CA;
  if (ca) {
    const cert = process.env.AIRLOCK_TLS_CERT;
    const key = process.env.AIRLOCK_TLS_KEY;
    return grpc.credentials.createSsl(fs.readFileSync(ca),
      key ? fs.readFileSync(key) : null, cert ? fs.readFileSync(cert) : null);
  }
  const refusal = plaintextRefusal(addr);
  if (refusal) throw new Error(`${refusal}: the broker speaks plaintext gRPC only on its unix socket and loopback; set AIRLOCK_TLS_CA to use TLS`);
  return grpc.credentials.createInsecure();
}

// The response as plain JSON.
function valueToJS(v) {
  switch (v && v.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return structToJS(v.structValue);
    case 'listValue': return ((v.listValue && v.listValue.values) || []).map(valueToJS);
    default: return null;
  }
}

function structToJS(s) {
  if (!s) return null;
  const out = {};
  for (const [k, v] of Object.entries(s.fields || {})) out[k] = valueToJS(v);
  return out;
}

function durationToJS(d) {
  if (!d) return null;
  return `${(Number(d.seconds) + d.nanos / 1e9).toFixed(3)}s`;
}

function timestampToJS(t) {
  if (!t) return null;
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}

const WELL_KNOWN = {
  'google.protobuf.Struct': structToJS,
  'google.protobuf.Value': valueToJS,
  'google.protobuf.Duration': durationToJS,
  'google.protobuf.Timestamp': timestampToJS,
};

// messageToJS walks a decoded message by its descriptor, so fields added to
// the proto later come out right too: Struct as plain JSON, Duration as
// "1.500s", Timestamp as RFC 3339.
function messageToJS(msg, typeName) {
  if (msg === null || msg === undefined) return null;
  if (WELL_KNOWN[typeName]) return WELL_KNOWN[typeName](msg);
  const def = packageDefinition[typeName] || packageDefinition[`airlock.v1.${typeName}`];
  if (!def || !def.type) return msg;
  const out = {};
  for (const f of def.type.field) {
    const v = msg[f.name];
    if (f.type !== 'TYPE_MESSAGE') out[f.name] = v;
    else if (f.label === 'LABEL_REPEATED') out[f.name] = Array.isArray(v) ? v.map((x) => messageToJS(x, f.typeName)) : v; // a map stays an object
    else out[f.name] = messageToJS(v, f.typeName);
  }
  return out;
}

let packageDefinition = null;

// One channel per address, kept, so that round_robin goes round the
// brokers from one call to the next; closeClients closes them.
const clients = new Map();

function closeClients() {
  for (const c of clients.values()) c.close();
  clients.clear();
}

function brokerClient(addr) {
  if (!clients.has(addr)) clients.set(addr, newBrokerClient(addr));
  return clients.get(addr);
}

function newBrokerClient(addr) {
  if (!packageDefinition) {
    packageDefinition = protoLoader.loadSync('airlock/v1/broker.proto', {
      includeDirs: [PROTO_ROOT],
      keepCase: true, // field names as in the proto: result_schema, job_id
      enums: String, // VERDICT_OK, not 1
      longs: String, // int64 without precision loss
      defaults: true,
      oneofs: true,
    });
  }
  const { Broker } = grpc.loadPackageDefinition(packageDefinition).airlock.v1;
  return new Broker(addr, credentialsFor(addr), {
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
    'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
    // A resolver's own service config (a DNS TXT record) must not turn
    // the retries off: only ours applies.
    'grpc.service_config_disable_resolution': 1,
    // Enough to send a request with the broker's largest content again.
    'grpc.per_rpc_retry_buffer_size': 48 << 20,
    'grpc.retry_buffer_size': 96 << 20,
  });
}

// spawnJob runs one job and resolves to its SpawnResponse as plain JSON. It
// rejects only when the call failed (err.code is the gRPC status code); a
// job that failed in its sandbox resolves with a verdict other than
// VERDICT_OK.
//
//   content     Buffer or string: the untrusted content
//   url         instead of content: a URL the sandbox fetches through its
//               egress proxy (a profile with network.mode allowlist)
//   schema      the result's JSON Schema, as an object or a JSON string;
//               default the task's own (taskSchema); null or '' sends none,
//               so the profile's defaultSchema applies
//   addr        default $AIRLOCK_ADDR, else the default unix socket; a
//               target of several brokers is balanced (SERVICE_CONFIG)
//   tokenFile   default $AIRLOCK_TOKEN_FILE
//   jobId       the idempotency key; default a new UUID, the same for
//               every retry of the call
//   profile, task, params, mediaType, source, deadlineSeconds: as the flags
function spawnJob({ content, url = '', schema, addr = process.env.AIRLOCK_ADDR || DEFAULT_ADDR,
  tokenFile = process.env.AIRLOCK_TOKEN_FILE, profile = 'secureclaw', task = 'summarize', params = {},
  mediaType = 'text/plain', source = '', deadlineSeconds = 300, instructions = '', model = '', jobId = '' }) {
  return new Promise((resolve, reject) => {
    const token = readToken(tokenFile);
    const client = brokerClient(addr);
    // The token goes in per-call metadata. (grpc-js does not compose call
    // credentials with plaintext channel credentials, which the unix socket
    // uses.)
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const req = {
      job_id: jobId || crypto.randomUUID(),
      profile,
      task: { name: task, params, instructions },
      content: [url ? { url, media_type: mediaType || '', source: source || url }
        : { data: Buffer.from(content), media_type: mediaType, source }],
      result_schema: schemaText(schema === undefined ? taskSchema(task) : schema),
    };
    if (model) req.overrides = { model: { name: model } };
    const deadline = new Date(Date.now() + deadlineSeconds * 1000);
    client.Spawn(req, md, { deadline }, (err, resp) => {
      if (err) reject(err);
      else resolve(messageToJS(resp, 'airlock.v1.SpawnResponse'));
    });
  });
}

// schemaText is a schema as the request carries it: '' for none.
function schemaText(schema) {
  if (schema === null || schema === '') return '';
  return typeof schema === 'string' ? schema : JSON.stringify(schema);
}

// askJob runs the agent task: a model-driven sub-agent reads the content
// inside the sandbox and answers the instructions in the schema's shape.
// The instructions are the caller's own words; the content is untrusted.
// It resolves to the SpawnResponse as plain JSON, like spawnJob.
//
//   instructions  what the model should do with the content (required)
//   model         one of the profile's allowed models (default: its own)
//   the rest as for spawnJob; schema defaults to ANSWER_SCHEMA
function askJob({ instructions, schema = ANSWER_SCHEMA, ...rest }) {
  if (!instructions) return Promise.reject(new UsageError('askJob needs instructions'));
  return spawnJob({ ...rest, schema, task: 'agent', instructions });
}

// schemaOption is the schema --schema asks for: a file, none, or the
// task's own.
function schemaOption(opts) {
  if (opts.schema === 'none') return null;
  if (opts.schema) return fs.readFileSync(opts.schema, 'utf8');
  return opts.instructions ? ANSWER_SCHEMA : undefined;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let resp;
  try {
    resp = await spawnJob({
      content: opts.url ? undefined : fs.readFileSync(opts.content === '-' ? 0 : opts.content),
      url: opts.url,
      schema: schemaOption(opts),
      profile: opts.profile,
      task: opts.task,
      params: opts.params,
      mediaType: opts.mediaType || (opts.url ? '' : mediaTypeOf(opts.content)),
      source: opts.source || (opts.url || (opts.content === '-' ? 'stdin' : path.basename(opts.content))),
      deadlineSeconds: opts.deadline,
      instructions: opts.instructions || '',
      model: opts.model,
    });
  } catch (err) {
    if (typeof err.code !== 'number') throw err; // not a gRPC status
    console.error(`airlock: Spawn: ${grpc.status[err.code] || err.code}: ${err.details || err.message}`);
    process.exitCode = 1;
    return;
  } finally {
    closeClients();
  }
  process.stdout.write(JSON.stringify(resp, null, 2) + '\n');
  process.exitCode = resp.verdict === 'VERDICT_OK' ? 0 : 3;
}

module.exports = { spawnJob, askJob, closeClients, taskSchema, ANSWER_SCHEMA, SERVICE_CONFIG, credentialsFor };

if (require.main === module) {
  main().catch((err) => {
    if (err instanceof UsageError) {
      if (!err.message) {
        console.log(USAGE); // --help
      } else {
        console.error(`airlock: ${err.message}\n${USAGE}`);
        process.exitCode = 2;
      }
    } else {
      console.error(`airlock: ${err.message}`);
      process.exitCode = 1;
    }
  });
}
