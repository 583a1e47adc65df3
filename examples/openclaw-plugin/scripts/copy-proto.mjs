// copy-proto.mjs: copy the broker's proto from the repository into
// dist/proto, so the built plugin carries the one file it loads at run time
// and works wherever OpenClaw installs it.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const rel = "airlock/v1/broker.proto";
const src = resolve(here, "..", "..", "..", "proto", rel);
const dst = resolve(here, "..", "dist", "proto", rel);
mkdirSync(dirname(dst), { recursive: true });
copyFileSync(src, dst);
