// broker.ts: one airlock.v1.Broker/Spawn call over gRPC, as
// examples/node/spawn.js makes it, with the response walked into plain JSON.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

// dist/proto holds broker.proto (scripts/copy-proto.mjs puts it there at
// build time). It imports only Google's well-known types, which protobufjs
// carries built in, so this directory is the whole include path.
const PROTO_ROOT = fileURLToPath(new URL("./proto", import.meta.url));

/** Where and how to reach airlockd. */
export type BrokerTarget = {
  /**
   * gRPC target: unix:///run/airlock/airlock.sock, 127.0.0.1:PORT,
   * several loopback brokers (ipv4:127.0.0.1:PORT,127.0.0.2:PORT), or,
   * with tls, a remote one (dns:///airlock.airlock.svc.cluster.local:7443);
   * see credentialsFor.
   */
  address: string;
  /** File holding the bearer token. */
  tokenFile: string;
  /** Deadline of one call, in seconds. */
  timeoutSeconds: number;
  /** TLS to the broker (the plugin config's tls); none: plaintext, loopback only. */
  tls?: TLSFiles;
};

/**
 * TLSFiles are the plugin config's tls: paths of PEM files, read on each
 * call, never cached, so that a renewed certificate takes effect at the next
 * call. caFile turns TLS on for every target and is then the only CA
 * trusted; certFile and keyFile, both or neither, are the client
 * certificate airlockd asks for with --tls-client-ca.
 */
export type TLSFiles = {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
};

/** One Content item of a SpawnRequest: data or url, never both. */
export type SpawnContent = {
  data?: Buffer;
  url?: string;
  media_type: string;
  source: string;
};

/** The SpawnRequest fields this plugin sets, in the proto's own names. */
export type SpawnRequest = {
  profile: string;
  task: { name: string; params: Record<string, string>; instructions: string };
  content: SpawnContent[];
  result_schema: string;
};

type Finding = { path: string; kind: string; detail: string; count: number };
type Egress = { host: string; port: number; allowed: boolean };

/** The SpawnResponse fields this plugin reads, as plain JSON. */
export type SpawnResponse = {
  job_id: string;
  verdict: string;
  message: string;
  result: Record<string, unknown> | null;
  findings: Finding[];
  egress: Egress[];
  egressDeniedPackets: number;
  policySummary: string;
};

/** A failed call: the gRPC status in the broker's words. */
export class BrokerError extends Error {
  constructor(
    readonly code: string,
    readonly details: string,
  ) {
    super(`airlock: ${code}: ${details}`);
    this.name = "BrokerError";
  }
}

let packageDefinition: protoLoader.PackageDefinition | undefined;

type BrokerClient = grpc.Client & {
  Spawn(
    req: SpawnRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, resp?: Record<string, unknown>) => void,
  ): grpc.ClientUnaryCall;
};

function brokerClient(address: string, tls: TLSFiles | undefined): BrokerClient {
  packageDefinition ??= protoLoader.loadSync("airlock/v1/broker.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // result_schema, job_id: the proto's names
    enums: String, // VERDICT_OK, not 1
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    airlock: { v1: { Broker: grpc.ServiceClientConstructor } };
  };
  return new pkg.airlock.v1.Broker(address, credentialsFor(address, tls), {
    "grpc.max_receive_message_length": 64 << 20,
    "grpc.max_send_message_length": 64 << 20,
  }) as unknown as BrokerClient;
}

// TARGET_SCHEMES are the schemes @grpc/grpc-js resolves. A target of any
// other scheme, or of none (127.0.0.1:7777), is a dns: name, the whole
// target its host:port (grpc-js's resolver.mapUriDefaultScheme).
const TARGET_SCHEMES = new Set(["dns", "ipv4", "ipv6", "unix"]);

// LOOPBACK is 127.0.0.0/8 and ::1, however spelled (::ffff:127.0.0.1 too).
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

// targetParts splits a gRPC target into scheme, authority and path as
// grpc-js's uri-parser does, so that the hosts checked are the ones the
// channel dials: dns://8.8.8.8/localhost:7443 is {dns, 8.8.8.8,
// localhost:7443}, ipv4:127.0.0.1:1,127.0.0.2:2 is {ipv4, "", the list}.
function targetParts(target: string): { scheme: string; authority: string; path: string } {
  const m = /^(?:([A-Za-z0-9+.-]+):)?(?:\/\/([^/]*)\/)?(.+)$/.exec(target);
  if (m?.[1] !== undefined && TARGET_SCHEMES.has(m[1])) return { scheme: m[1], authority: m[2] ?? "", path: m[3] };
  return { scheme: "dns", authority: "", path: target };
}

// hostOf is the host of a host:port, [v6]:port or bare host, as grpc-js's
// splitHostPort reads it, or null where grpc-js finds none.
function hostOf(hostport: string): string | null {
  if (hostport.startsWith("[")) {
    const m = /^\[([^\]]*:[^\]]*)\](?::\d+)?$/.exec(hostport);
    return m ? m[1] : null;
  }
  const parts = hostport.split(":");
  if (parts.length !== 2) return hostport; // no port, or a bare IPv6 address
  return /^\d+$/.test(parts[1]) ? parts[0] : null;
}

// plaintextRefusal says why plaintext gRPC must not go to target, or
// returns "" when it may: a unix socket, or a target every host of which
// (one, or each of an ipv4: or ipv6: list) is a loopback IP address or
// localhost. localhost counts only as this host's own resolver (getaddrinfo,
// /etc/hosts) answers for it: not when the target names a DNS server to ask
// (dns://8.8.8.8/localhost:7443, whose answer is that server's to give), nor
// when GRPC_NODE_USE_ALTERNATIVE_RESOLVER has grpc-js ask DNS servers
// instead. An IP literal is never looked up, whatever server is named.
// examples/node/spawn.js applies the same rule.
function plaintextRefusal(target: string): string {
  const { scheme, authority, path } = targetParts(target);
  if (scheme === "unix") return "";
  for (const hostport of scheme === "dns" ? [path] : path.split(",")) {
    const host = hostOf(hostport);
    if (host === null) return `target ${target}: ${hostport} is not a host:port`;
    const family = isIP(host);
    if (family !== 0) {
      if (!LOOPBACK.check(host, family === 6 ? "ipv6" : "ipv4")) return `target ${target}: ${host} is not loopback`;
    } else if (host !== "localhost") {
      return `target ${target}: ${host} is not loopback`;
    } else if (authority) {
      return `target ${target}: localhost is looked up at the DNS server ${authority}, whose answer need not be loopback (dns:///localhost:PORT asks this host)`;
    } else if (process.env.GRPC_NODE_USE_ALTERNATIVE_RESOLVER === "true") {
      return `target ${target}: with GRPC_NODE_USE_ALTERNATIVE_RESOLVER=true, grpc-js asks DNS servers, not /etc/hosts, for localhost`;
    }
  }
  return "";
}

/**
 * credentialsFor returns the channel credentials for a target. With
 * tls.caFile set, TLS for any target, loopback and unix sockets too,
 * trusting that CA alone, with the client certificate if one is set; a
 * setting that is wrong or a file that cannot be read is an error naming
 * the setting, never a reason to go on in plaintext. Without it,
 * plaintext, which the broker speaks on its unix socket and on loopback
 * only: any other target is refused (plaintextRefusal). Errors name
 * settings and paths, never what the files hold.
 */
export function credentialsFor(target: string, tls: TLSFiles = {}): grpc.ChannelCredentials {
  for (const field of ["caFile", "certFile", "keyFile"] as const) {
    if (tls[field] === "") throw new Error(`airlock: tls.${field} is empty: give a path, or leave it out`);
  }
  const { caFile, certFile, keyFile } = tls;
  if (certFile && !keyFile) throw new Error("airlock: tls.certFile is set without tls.keyFile: a client certificate needs its private key");
  if (keyFile && !certFile) throw new Error("airlock: tls.keyFile is set without tls.certFile: a private key needs its client certificate");
  if (!caFile) {
    if (certFile) {
      throw new Error(
        "airlock: tls.certFile and tls.keyFile are set without tls.caFile: set tls.caFile to the CA that signed airlockd's certificate",
      );
    }
    const refusal = plaintextRefusal(target);
    if (refusal) {
      throw new Error(
        `airlock: ${refusal}: the broker speaks plaintext gRPC only on its unix socket and loopback; set tls.caFile in the plugin config to use TLS`,
      );
    }
    return grpc.credentials.createInsecure();
  }
  const ca = readSetting("tls.caFile", caFile);
  checkCABundle(caFile, ca);
  const cert = certFile ? readSetting("tls.certFile", certFile) : null;
  const key = keyFile ? readSetting("tls.keyFile", keyFile) : null;
  try {
    // grpc-js builds the TLS context here, so a certificate and key that
    // do not parse or do not match fail now, not at the first handshake.
    return grpc.credentials.createSsl(ca, key, cert);
  } catch (err) {
    // OpenSSL's reason (no start line, key values mismatch), never the PEM.
    const reason = err instanceof Error ? err.message : String(err);
    if (!certFile) throw new Error(`airlock: tls.caFile ${caFile}: ${reason}`);
    throw new Error(
      `airlock: tls.certFile ${certFile} and tls.keyFile ${keyFile} are not a PEM certificate and its private key: ${reason}`,
    );
  }
}

// readSetting reads the file a setting names. Its error names the setting,
// the path and the errno (ENOENT, EACCES), and holds nothing read.
function readSetting(setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
    throw new Error(`airlock: ${setting}: cannot read ${file}: ${code}`);
  }
}

// checkCABundle refuses a CA file that is not PEM certificates. Node
// would take such a file as an empty list of CAs, trusting nothing, and
// every handshake would fail without saying that the file is why.
function checkCABundle(file: string, pem: Buffer): void {
  const blocks = pem.toString("latin1").match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`airlock: tls.caFile ${file}: no PEM certificate in it`);
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch {
      throw new Error(`airlock: tls.caFile ${file}: certificate ${i + 1} does not parse`);
    }
  }
}

function readToken(file: string): string {
  if (!file) throw new Error("airlock: no token file: set tokenFile in the plugin config or AIRLOCK_TOKEN_FILE");
  const token = readFileSync(file, "utf8").trim();
  if (!token) throw new Error(`airlock: token file ${file} is empty`);
  return token;
}

type ProtoValue = {
  kind?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
};
type ProtoStruct = { fields?: Record<string, ProtoValue> };

function valueToJS(v: ProtoValue | undefined): unknown {
  switch (v?.kind) {
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return structToJS(v.structValue);
    case "listValue":
      return (v.listValue?.values ?? []).map(valueToJS);
    default:
      return null;
  }
}

function structToJS(s: ProtoStruct | null | undefined): Record<string, unknown> | null {
  if (!s) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields ?? {})) out[k] = valueToJS(v);
  return out;
}

function responseToJS(resp: Record<string, any>): SpawnResponse {
  return {
    job_id: String(resp.job_id ?? ""),
    verdict: String(resp.verdict ?? ""),
    message: String(resp.message ?? ""),
    result: structToJS(resp.result),
    findings: (resp.sanitization?.findings ?? []).map((f: Record<string, unknown>) => ({
      path: String(f.path ?? ""),
      kind: String(f.kind ?? ""),
      detail: String(f.detail ?? ""),
      count: Number(f.count ?? 0),
    })),
    egress: (resp.egress ?? []).map((e: Record<string, unknown>) => ({
      host: String(e.host ?? ""),
      port: Number(e.port ?? 0),
      allowed: e.allowed === true,
    })),
    egressDeniedPackets: Number(resp.usage?.egress_denied_packets ?? 0),
    policySummary: String(resp.policy?.summary ?? ""),
  };
}

/**
 * spawnJob runs one job and resolves to its response. It rejects with a
 * BrokerError when the call failed; a job that failed in its sandbox
 * resolves, with a verdict other than VERDICT_OK.
 */
export function spawnJob(target: BrokerTarget, req: SpawnRequest, signal?: AbortSignal): Promise<SpawnResponse> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const token = readToken(target.tokenFile);
    const client = brokerClient(target.address, target.tls);
    // Per-call metadata: grpc-js does not compose call credentials with
    // the plaintext channel credentials the unix socket uses. Over TLS the
    // token is sent only after the handshake has verified the broker.
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${token}`);
    const deadline = new Date(Date.now() + target.timeoutSeconds * 1000);
    const call = client.Spawn(req, md, { deadline }, (err, resp) => {
      signal?.removeEventListener("abort", onAbort);
      client.close();
      if (err) reject(new BrokerError(grpc.status[err.code] ?? String(err.code), err.details || err.message));
      else resolve(responseToJS(resp ?? {}));
    });
    // When OpenClaw aborts the tool call, cancel the RPC.
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
