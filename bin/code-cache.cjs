// Loads a CommonJS bundle through V8's code cache: the bytecode of every function the last run
// compiled, so that this start deserializes it instead of parsing and compiling the bundle again
// (Node 20 has no module compile cache; docs/performance.md, run_overhead).
//
// The cache is a file beside the bundle (as trusted as the bundle: whoever can write one can write
// the other), one per Node version and architecture. It is trusted only
// when everything that shaped it matches: its header names this Node, V8, architecture and the
// bundle's size, mtime and inode, and a checksum of the payload matches. The checksum is not
// optional: V8 checks its own version and the source's length, but a payload damaged anywhere
// else aborts the process while it is deserialized (V8_Fatal, measured on Node 20). Anything that
// does not match — stale, corrupt, foreign, truncated — is ignored, the bundle is compiled from
// source, and the cache is written anew when the run ends: to a temp file first, renamed into
// place, so that concurrent first runs each write a whole file and the last rename wins. A
// directory we cannot write (a read-only install) just means no cache.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { createRequire } = require("node:module");

const MAGIC = "coral-code-cache 1";

/** The file holding `bundle`'s code cache for this Node. */
function cachePath(bundle) {
  return `${bundle}.${process.version}-${process.arch}.v8cache`;
}

/** What the cache must have been made from: this Node and exactly this file. */
function identity(stat) {
  return [MAGIC, process.version, process.versions.v8, process.arch, stat.size, stat.mtimeMs, stat.ino].join(" ");
}

/**
 * A checksum of the payload: zlib's CRC-32 (native; Node 20.15 and later), else Fletcher-style sums
 * over 32-bit words. The JavaScript loop runs hot enough to be compiled by the optimiser on every
 * start: a whole `coral run` took 10–20 ms less CPU with the CRC (perf stat, Node 20.20, load ~25).
 */
function checksum(buf) {
  const { crc32 } = require("node:zlib");
  if (typeof crc32 === "function") return `crc32.${crc32(buf).toString(16)}.${buf.length}`;
  const words = buf.length >>> 2;
  const aligned = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf);
  const w = new Int32Array(aligned.buffer, aligned.byteOffset, words);
  let s = 0;
  let t = 0;
  for (let i = 0; i < words; i++) {
    s = (s + w[i]) | 0;
    t = (t + s) | 0;
  }
  for (let i = words * 4; i < buf.length; i++) {
    s = (s + buf[i] + 1) | 0;
    t = (t + s) | 0;
  }
  return `${(s >>> 0).toString(16)}.${(t >>> 0).toString(16)}.${buf.length}`;
}

/** The cached bytecode for `id`, or undefined when the file is missing or does not match in every respect. */
function readCache(file, id) {
  let data;
  try {
    data = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  const nl = data.indexOf(10);
  if (nl < 0 || nl > 1024) return undefined;
  const header = data.toString("latin1", 0, nl);
  const cut = header.lastIndexOf(" ");
  if (header.slice(0, cut) !== id) return undefined;
  const payload = data.subarray(nl + 1);
  return payload.length > 0 && checksum(payload) === header.slice(cut + 1) ? payload : undefined;
}

/** Writes the cache whole or not at all; never throws. */
function writeCache(file, id, payload) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, Buffer.concat([Buffer.from(`${id} ${checksum(payload)}\n`, "latin1"), payload]), { flag: "wx", mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // Never created (read-only directory) or already renamed.
    }
  }
}

/**
 * Evaluates the CommonJS bundle at `bundle` and returns its exports, and a function to call once
 * the work is done: it writes a new cache when there was no usable one (then, the cache holds what
 * the whole run compiled, not only the bundle's top level).
 */
function loadCached(bundle) {
  const fd = fs.openSync(bundle, "r");
  let source;
  let stat;
  try {
    stat = fs.fstatSync(fd);
    source = fs.readFileSync(fd, "utf8");
  } finally {
    fs.closeSync(fd);
  }
  const file = cachePath(bundle);
  const id = identity(stat);
  const cachedData = readCache(file, id);
  const wrapper = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new vm.Script(wrapper, { filename: bundle, cachedData });
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
  const fresh = cachedData === undefined || script.cachedDataRejected === true;
  return {
    exports: module.exports,
    done() {
      if (fresh) writeCache(file, id, script.createCachedData());
    },
  };
}

module.exports = { loadCached, cachePath, checksum };
