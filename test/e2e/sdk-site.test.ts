// The SDK reference site as its readers see it: what `npm run docs` builds (TypeDoc, typedoc.json
// and its plugin scripts/typedoc-sdk.mjs), built into a temporary directory and every page opened
// in headless Chromium. It fails on what the site used to show: modules as "Variable metrics
// Const", a signature twice, no examples, wire names (GetServiceResponse, "RPC: coral.colony.v1…")
// as the SDK's types, return docs about fields the SDK does not return, an empty hierarchy page,
// "undefined", dead links. Screenshots of the start page and the metrics module go to
// .tmp/sdk-site/ for people to look at.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize, posix } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rpcsOf, sdkModules } from "../../codegen/model.js";
import { file_coral_colony_v1_query } from "../../gen/coral/colony/v1/query_pb.js";
import { Browser, chromiumPath, type Page } from "../helpers/chromium.js";
import { listFiles } from "../helpers/files.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const shots = join(root, ".tmp/sdk-site");

interface Member {
  name: string;
  signatures: number;
  returnsType: string;
  returns: string;
  example: string;
  /** Laid out with a height: shown, not hidden by a stylesheet or a script. */
  shown: boolean;
}

interface PageView {
  title: string;
  /** What a reader sees: the rendered text of the whole page. */
  text: string;
  /** The page's own content, without its title and breadcrumbs. */
  content: string;
  hrefs: string[];
  ids: string[];
  members: Member[];
  /** The sidebar filled in by TypeDoc's script. */
  navigation: boolean;
  errors: string[];
}

// Runs in the page once TypeDoc's script has shown it (it hides the body until then) and filled in
// the sidebar; gives up waiting after 10 s so a broken page is reported, not waited on forever.
const READ_PAGE = `(async () => {
  const deadline = Date.now() + 10000;
  const ready = () => document.body.style.display !== "none" && document.querySelector("#tsd-nav-container")?.children.length > 0;
  while (!ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const content = document.querySelector(".col-content").cloneNode(true);
  content.querySelector(".tsd-page-title")?.remove();
  return {
    title: document.querySelector("h1")?.innerText ?? "",
    text: document.body.innerText,
    content: content.textContent.trim(),
    hrefs: [...document.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")),
    ids: [...document.querySelectorAll("[id]")].map((e) => e.id),
    members: [...document.querySelectorAll("section.tsd-member")].map((m) => ({
      name: m.querySelector("h3")?.innerText.trim() ?? "",
      signatures: m.querySelectorAll(".tsd-signature").length,
      returnsType: m.querySelector(".tsd-returns-title")?.innerText.replace(/^Returns\\s*/, "").trim() ?? "",
      returns: m.querySelector(".tsd-returns-title")?.nextElementSibling?.innerText.trim() ?? "",
      example: m.querySelector(".tsd-tag-example pre")?.innerText ?? "",
      shown: m.offsetHeight > 0,
    })),
    navigation: ready(),
  };
})()`;

let site: string;
let browser: Browser | undefined;
const views = new Map<string, PageView>();

/** The SDK's modules and their functions (aliases included), from the annotated proto. */
const modules = sdkModules(rpcsOf(file_coral_colony_v1_query.services)).map(({ module, rpcs }) => ({
  module,
  functions: rpcs.flatMap((r) => [r.sdk!.function, ...r.sdk!.aliases.map((a) => a.function)]),
}));

async function read(page: Page, file: string): Promise<PageView> {
  page.errors.length = 0;
  await page.goto(pathToFileURL(join(site, file)).href);
  const view = await page.evaluate<Omit<PageView, "errors">>(READ_PAGE);
  return { ...view, errors: [...page.errors] };
}

beforeAll(async () => {
  // No Chromium is a failure that says how to get it, never a skipped test.
  const chromium = chromiumPath();
  site = mkdtempSync(join(tmpdir(), "coral-sdk-site-"));
  try {
    execFileSync(process.execPath, [join(root, "node_modules/typedoc/bin/typedoc"), "--out", site], { cwd: root, stdio: "pipe", encoding: "utf8" });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    throw new Error(`npm run docs failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
  browser = await Browser.launch(chromium, { width: 1280, height: 1000 });
  const page = await browser.newPage();
  for (const file of listFiles(site).filter((f) => f.endsWith(".html"))) views.set(file, await read(page, file));
  mkdirSync(shots, { recursive: true });
  for (const [file, name] of [
    ["index.html", "index.png"],
    ["modules/metrics.html", "metrics.png"],
  ]) {
    await page.goto(pathToFileURL(join(site, file)).href);
    await page.evaluate(READ_PAGE);
    writeFileSync(join(shots, name), await page.screenshot());
  }
}, 240_000);

afterAll(async () => {
  await browser?.close();
  if (site) rmSync(site, { recursive: true, force: true });
});

/** Where `pattern` first matches in `text`, with some text around it; undefined when nowhere. */
function found(text: string, pattern: RegExp): string | undefined {
  const m = pattern.exec(text);
  return m ? `…${text.slice(Math.max(0, m.index - 60), m.index + m[0].length + 60)}…` : undefined;
}

const sdkPages = () => [...views].filter(([file]) => !file.startsWith("documents/"));

describe("the SDK reference site", () => {
  it("has one page per SDK module with its functions in full: one signature, what it returns, an example", () => {
    expect(modules.map((m) => m.module)).toEqual(["services", "metrics", "traces", "system", "db"]);
    for (const { module, functions } of modules) {
      const view = views.get(`modules/${module}.html`);
      expect(view, `no page for coral.${module}`).toBeDefined();
      expect(view!.title).toBe(`Namespace ${module}`);
      expect(view!.members.map((m) => m.name)).toEqual(functions);
      for (const m of view!.members) {
        const where = `coral.${module}.${m.name}`;
        expect(m.shown, where).toBe(true);
        expect(m.signatures, `${where}: signatures`).toBe(1);
        expect(m.returnsType, where).toMatch(/^(Promise<.+>|AsyncGenerator<.+>)$/);
        expect(m.returns, `${where}: @returns`).not.toBe("");
        // A result that may be null says when: no data is not a 0.
        if (/\| null>$/.test(m.returnsType)) expect(m.returns, `${where}: @returns`).toMatch(/\bnull\b/);
        expect(m.example, `${where}: @example`).toMatch(new RegExp(`\\.${module}\\.${m.name}(<[\\s\\S]*?>)?\\(`));
      }
      // No function has a page of its own: the module's page is where they are.
      expect(listFiles(site).filter((f) => f.startsWith(`functions/${module}.`))).toEqual([]);
    }
  });

  it("shows the metrics module with getPercentile, its parameters, result and example (screenshot in .tmp/sdk-site/)", () => {
    const view = views.get("modules/metrics.html")!;
    const get = view.members.find((m) => m.name === "getPercentile")!;
    expect(get.returnsType).toBe("Promise<number | null>");
    expect(get.example).toContain('coral.metrics.getPercentile("payments"');
    expect(view.text).toMatch(/percentile: number\s+Percentile as a fraction \(0\.99\).*Range: \(0, 1\]\. Default: 0\.99\./);
    expect(view.text).toMatch(/time_range_ms: number\s+Look-back window in milliseconds\. Default: 3600000 \(1h\)\./);
    for (const name of ["index.png", "metrics.png"]) {
      const png = readFileSync(join(shots, name));
      expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), name).toBe(true);
    }
  });

  it("names results as scripts know them, not by their wire messages", () => {
    for (const [file, view] of sdkPages()) {
      expect(found(view.text, /\b[A-Z]\w*(Request|Response)\b/), file).toBeUndefined();
      expect(found(view.text, /coral\.colony\.v1/), file).toBeUndefined();
      expect(found(view.text, /\bRPC:/), file).toBeUndefined();
    }
    const services = views.get("modules/services.html")!;
    expect(services.members.find((m) => m.name === "get")?.returnsType).toBe("Promise<ServiceDetails>");
    expect(views.get("interfaces/ServiceDetails.html")?.title).toBe("Interface ServiceDetails");
    expect(views.get("interfaces/SystemMetrics.html")?.title).toBe("Interface SystemMetrics");
  });

  it("renders every page: content, the sidebar, no script errors, no 'Variable … Const', no 'undefined'", () => {
    expect(views.size).toBeGreaterThan(10);
    for (const [file, view] of views) {
      expect(view.content.length, `${file} is empty`).toBeGreaterThan(20);
      expect(view.navigation, `${file}: the sidebar stayed empty`).toBe(true);
      expect(view.errors, `${file}: errors in the page`).toEqual([]);
      expect(found(view.text, /\bVariable\b[\s\S]{0,80}?\bConst\b/), file).toBeUndefined();
      expect(found(view.text, /\bundefined\b/), file).toBeUndefined();
    }
  });

  it("has no hierarchy page (the SDK has no class hierarchy to show)", () => {
    expect(existsSync(join(site, "hierarchy.html"))).toBe(false);
    for (const [file, view] of views) expect(view.hrefs.filter((h) => h.includes("hierarchy.html")), file).toEqual([]);
  });

  it("links only to pages and anchors that exist", () => {
    const broken: string[] = [];
    for (const [file, view] of views) {
      for (const href of view.hrefs) {
        if (/^(https?|mailto):/.test(href)) continue;
        const [path, anchor] = href.split("#") as [string, string | undefined];
        const target = path === "" ? file : posix.normalize(posix.join(posix.dirname(file), decodeURIComponent(path)));
        if (target.startsWith("..") || !existsSync(join(site, normalize(target)))) {
          broken.push(`${file}: ${href} (no such file)`);
          continue;
        }
        if (!anchor || !target.endsWith(".html")) continue;
        const ids = views.get(target)?.ids ?? [];
        if (!ids.includes(decodeURIComponent(anchor))) broken.push(`${file}: ${href} (no such anchor)`);
      }
    }
    expect(broken).toEqual([]);
    // The reference of each function's RPC is part of the site, linked from the function.
    const metrics = views.get("modules/metrics.html")!;
    expect(metrics.hrefs).toContain("../documents/GetPercentile.html");
  });
});
