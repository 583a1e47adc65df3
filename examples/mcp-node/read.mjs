#!/usr/bin/env node
// Reads a file through Airlock with the official TypeScript MCP SDK's
// client: `airlock mcp` on stdio by default, or a running
// `airlock mcp --http` with --http URL. Prints the tools it found and
// airlock_read's structured result as JSON.
//
//   node read.mjs [--airlock PATH] [--http URL] [--profile P] [--task T]
//                 [--media-type M] FILE
//
// The socket and token come from AIRLOCK_SOCKET and AIRLOCK_TOKEN_FILE, as
// for the airlock CLI; over HTTP the token is sent as a bearer token.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function parseArgs(argv) {
  const opts = { airlock: "airlock", http: "", profile: "", task: "extract_text", mediaType: "text/html", file: "" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--airlock") opts.airlock = next();
    else if (a === "--http") opts.http = next();
    else if (a === "--profile") opts.profile = next();
    else if (a === "--task") opts.task = next();
    else if (a === "--media-type") opts.mediaType = next();
    else if (a.startsWith("--")) throw new Error(`unknown flag ${a}`);
    else opts.file = a;
  }
  if (!opts.file) throw new Error("usage: node read.mjs [flags] FILE");
  return opts;
}

function transport(opts) {
  if (opts.http) {
    const tokenFile = process.env.AIRLOCK_TOKEN_FILE;
    if (!tokenFile) throw new Error("set AIRLOCK_TOKEN_FILE");
    const token = readFileSync(tokenFile, "utf8").trim();
    return new StreamableHTTPClientTransport(new URL(opts.http), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  }
  // The SDK passes a server only a safe subset of the environment: name
  // what airlock needs.
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  for (const k of ["AIRLOCK_SOCKET", "AIRLOCK_TOKEN_FILE", "AIRLOCK_ADDR"]) {
    if (process.env[k]) env[k] = process.env[k];
  }
  return new StdioClientTransport({ command: opts.airlock, args: ["mcp"], env, stderr: "inherit" });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const client = new Client({ name: "airlock-mcp-node-example", version: "0.1.0" });
  await client.connect(transport(opts));
  try {
    const { tools } = await client.listTools();
    const args = { content: readFileSync(opts.file, "utf8"), mediaType: opts.mediaType, source: `file:${opts.file}`, task: opts.task };
    if (opts.profile) args.profile = opts.profile;
    const res = await client.callTool({ name: "airlock_read", arguments: args });
    console.log(JSON.stringify({ tools: tools.map((t) => t.name), isError: !!res.isError, result: res.structuredContent ?? null, content: res.content }, null, 2));
  } finally {
    await client.close();
  }
}

main().catch((err) => {
  console.error(`read.mjs: ${err.message}`);
  process.exit(1);
});
