// bench/plot: an SVG of the percentile benchmark — query time and worst error vs span count, for
// GetPercentile, exact quantile_cont and approx_quantile. Hand-written SVG, no plotting dependency.
//
//   npx tsx bench/plot.ts [bench/results.json] [bench/percentile.svg]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

interface Size {
  spans: number;
  api_ms: number;
  exact_ms: number;
  approx_ms: number;
  max_rel_err_pct: number;
  approx_max_rel_err_pct: number;
}

interface Series {
  label: string;
  color: string;
  dash?: string;
  points: [number, number][];
}

const W = 900;
const H = 380;
const PANEL_W = 360;
const PANEL_H = 250;
const TOP = 60;

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Powers of ten covering [lo, hi] on a log axis. */
function decades(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

function tickLabel(v: number, unit: string): string {
  const num =
    v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : v >= 1 ? String(v) : v.toPrecision(1).replace(/^0\./, "0.");
  return `${num}${unit}`;
}

/** One log-log panel at (x0, TOP). */
function panel(x0: number, title: string, yUnit: string, series: Series[], xs: number[]): string {
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v > 0);
  const xTicks = decades(Math.min(...xs), Math.max(...xs));
  const yTicks = decades(Math.min(...ys), Math.max(...ys));
  const [xlo, xhi] = [Math.log10(xTicks[0]!), Math.log10(xTicks[xTicks.length - 1]!)];
  const [ylo, yhi] = [Math.log10(yTicks[0]!), Math.log10(yTicks[yTicks.length - 1]!)];
  const px = (v: number) => x0 + ((Math.log10(v) - xlo) / (xhi - xlo || 1)) * PANEL_W;
  const py = (v: number) => TOP + PANEL_H - ((Math.log10(Math.max(v, 10 ** ylo)) - ylo) / (yhi - ylo || 1)) * PANEL_H;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + PANEL_W / 2}" y="${TOP - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<rect x="${x0}" y="${TOP}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
  for (const t of yTicks) {
    const y = py(t).toFixed(1);
    parts.push(`<line x1="${x0}" x2="${x0 + PANEL_W}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${tickLabel(t, yUnit)}</text>`);
  }
  for (const t of xTicks) {
    const x = px(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${TOP}" y2="${TOP + PANEL_H}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${TOP + PANEL_H + 16}" text-anchor="middle">${tickLabel(t, "")}</text>`);
  }
  parts.push(`<text x="${x0 + PANEL_W / 2}" y="${TOP + PANEL_H + 36}" text-anchor="middle">spans in the 1 h window</text>`);
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] > 0).map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`);
    parts.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
    for (const p of pts) {
      const [x, y] = p.split(",");
      parts.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${s.color}"/>`);
    }
  }
  return parts.join("\n  ");
}

/** The SVG for a percentile result (the `percentile` object of results.json). */
export function writePlot(result: Record<string, unknown>): string {
  const sizes = (result.by_size as Size[]) ?? [];
  if (sizes.length === 0) throw new Error("no percentile sizes to plot");
  const xs = sizes.map((s) => s.spans);
  const api = "#0b7a75";
  const exact = "#c0392b";
  const approx = "#7d5ba6";
  const timeSeries: Series[] = [
    { label: "GetPercentile (API, log buckets)", color: api, points: sizes.map((s) => [s.spans, s.api_ms]) },
    { label: "exact quantile_cont (raw spans)", color: exact, points: sizes.map((s) => [s.spans, s.exact_ms]) },
    { label: "approx_quantile (raw spans)", color: approx, dash: "6 4", points: sizes.map((s) => [s.spans, s.approx_ms]) },
  ];
  const errSeries: Series[] = [
    { label: "GetPercentile", color: api, points: sizes.map((s) => [s.spans, s.max_rel_err_pct]) },
    { label: "approx_quantile", color: approx, dash: "6 4", points: sizes.map((s) => [s.spans, s.approx_max_rel_err_pct]) },
  ];
  const legend = timeSeries
    .map(
      (s, i) =>
        `<line x1="${80 + i * 270}" x2="${110 + i * 270}" y1="${H - 14}" y2="${H - 14}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>` +
        `<text x="${116 + i * 270}" y="${H - 14}" dominant-baseline="middle">${esc(s.label)}</text>`,
    )
    .join("\n  ");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
  <rect width="${W}" height="${H}" fill="white"/>
  ${panel(70, "p99 query time (median, ms)", "", timeSeries, xs)}
  ${panel(510, "worst relative error at p50/p90/p99/p99.9", "%", errSeries, xs)}
  <line x1="510" x2="${510 + PANEL_W}" y1="0" y2="0" stroke="none"/>
  ${legend}
</svg>
`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const here = new URL("..", import.meta.url).pathname;
  const input = process.argv[2] ?? join(here, "bench/results.json");
  const output = process.argv[3] ?? join(here, "bench/percentile.svg");
  const results = JSON.parse(readFileSync(input, "utf8")) as Record<string, Record<string, unknown>>;
  if (!results.percentile) throw new Error(`${input} has no percentile results; run npm run bench first`);
  writeFileSync(output, writePlot(results.percentile));
  console.log(`wrote ${output}`);
}
