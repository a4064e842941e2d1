// Staged incidents for the demo shop: one cause (a pod, a region, a route, a release, a customer
// tier) makes part of one service's requests slow or failing, among other values of the same
// attributes that behave normally (with their own mild differences), so `coral query explain` has
// something real to find and tests can check that it finds it.
//
// Staging draws from its own random stream: the demo's own traffic (and so every number the docs
// quote from the plain demo) stays the same with or without it, until the incident changes a span.

import { prng } from "./prng.js";

export const INCIDENT_KINDS = ["pod", "region", "route", "version", "tier"] as const;
export type IncidentKind = (typeof INCIDENT_KINDS)[number];

/**
 * The attribute each kind of cause is recorded under. The pod and its release are the pod's OTLP
 * resource attributes, as the OpenTelemetry Collector's k8sattributes processor or the SDK's
 * OTEL_RESOURCE_ATTRIBUTES would set them; the region (where the request came from), the route and
 * the tier are span attributes.
 */
export const INCIDENT_KEYS: Record<IncidentKind, string> = {
  pod: "k8s.pod.name",
  region: "cloud.region",
  route: "http.route",
  version: "service.version",
  tier: "app.customer.tier",
};

export type IncidentEffect = "slow" | "errors";

/** The service incidents are staged on (the demo's payments: the one the docs' worked example follows). */
export const INCIDENT_SERVICE = "payments";

/** Routes payments serves besides the demo's /charge and /refund, so "one route" has siblings. */
export const EXTRA_ROUTES: { method: "GET" | "POST"; path: string; median: number; p99: number; rate: number }[] = [
  { method: "GET", path: "/payments/:id", median: 25, p99: 150, rate: 20 },
  { method: "POST", path: "/authorize", median: 60, p99: 400, rate: 8 },
  { method: "POST", path: "/capture", median: 70, p99: 450, rate: 6 },
  { method: "GET", path: "/methods", median: 10, p99: 60, rate: 10 },
];

const ROUTES = ["/charge", "/refund", ...EXTRA_ROUTES.map((r) => r.path)];

/** Releases, each running on two pods (a pod runs one release, as a ReplicaSet's pods do). */
const RELEASES = [
  { version: "2.4.1", replicaSet: "6f8d9c7b5", pods: ["x2kq9", "b7mzt"] },
  { version: "2.5.0", replicaSet: "7c4b8f6d9", pods: ["p4wnc", "r8dhl"] },
  { version: "2.5.1", replicaSet: "5d9f7b8c6", pods: ["k3vfs", "t6gjq"] },
];
const PODS = RELEASES.flatMap((r) => r.pods.map((p) => ({ name: `${INCIDENT_SERVICE}-${r.replicaSet}-${p}`, version: r.version })));

/** Where requests come from, how often, and how much farther away (a latency factor). */
const REGIONS = [
  { value: "us-east-1", weight: 0.35, factor: 1 },
  { value: "us-west-2", weight: 0.25, factor: 1.05 },
  { value: "eu-west-1", weight: 0.2, factor: 1.1 },
  { value: "eu-central-1", weight: 0.12, factor: 1.08 },
  { value: "ap-southeast-1", weight: 0.08, factor: 1.25 },
];

/** Customer tiers: larger customers send bigger carts (a latency factor) and fail a little more. */
const TIERS = [
  { value: "free", weight: 0.5, factor: 0.95, errorRate: 0 },
  { value: "pro", weight: 0.3, factor: 1, errorRate: 0.001 },
  { value: "business", weight: 0.15, factor: 1.1, errorRate: 0.002 },
  { value: "enterprise", weight: 0.05, factor: 1.2, errorRate: 0.003 },
];

/** The values a kind of cause can take on the staged service. */
export function incidentValues(kind: IncidentKind): string[] {
  switch (kind) {
    case "pod":
      return PODS.map((p) => p.name);
    case "region":
      return REGIONS.map((r) => r.value);
    case "route":
      return ROUTES;
    case "version":
      return RELEASES.map((r) => r.version);
    case "tier":
      return TIERS.map((t) => t.value);
  }
}

export interface IncidentPlan {
  kind: IncidentKind;
  service: string;
  /** The attribute and value of the cause. */
  key: string;
  value: string;
  effect: IncidentEffect;
  /** Fraction of the culprit's requests that the incident hits, 0..1. */
  share: number;
  /** [fromMs, toMs): requests starting then are hit. */
  fromMs: number;
  toMs: number;
}

/**
 * An incident of `kind`, its culprit value, effect and strength drawn from `seed` (replayable).
 * The culprit may be a rare value (the enterprise tier, the /refund route): finding it is the test.
 */
export function planIncident(kind: IncidentKind, o: { seed: number; fromMs: number; toMs: number; effect?: IncidentEffect }): IncidentPlan {
  const random = prng(o.seed ^ 0x5eed1);
  const values = incidentValues(kind);
  const value = values[Math.floor(random() * values.length)]!;
  const effect = o.effect ?? (random() < 0.5 ? "slow" : "errors");
  return { kind, service: INCIDENT_SERVICE, key: INCIDENT_KEYS[kind], value, effect, share: 0.3 + random() * 0.4, fromMs: o.fromMs, toMs: o.toMs };
}

export interface StagedRequest {
  /** Span attributes to add to the request's SERVER span. */
  attributes: Record<string, string>;
  /** The pod that served it (its k8s.pod.name and the service.version it runs: resource attributes). */
  pod: { name: string; version: string };
  /** Milliseconds to add to its duration. */
  extraMs: number;
  /** The request fails (an HTTP status to give it), or null. */
  failStatus: number | null;
}

/** Decorates the staged service's requests with pod, release, region and tier, and applies the incident. */
export class Staging {
  /** The pods that serve the staged service's requests (in place of its usual ones). */
  static readonly podNames: readonly string[] = PODS.map((p) => p.name);

  private readonly random: () => number;

  constructor(
    readonly plan: IncidentPlan,
    readonly seed: number,
  ) {
    this.random = prng(seed ^ 0x1dc1de);
  }

  get service(): string {
    return this.plan.service;
  }

  request(route: string, startMs: number, durationMs: number): StagedRequest {
    const pod = PODS[Math.floor(this.random() * PODS.length)]!;
    const region = pick(REGIONS, this.random());
    const tier = pick(TIERS, this.random());
    const resource: Record<string, string> = { "k8s.pod.name": pod.name, "service.version": pod.version };
    const attributes: Record<string, string> = { "cloud.region": region.value, "app.customer.tier": tier.value };
    let extraMs = durationMs * (region.factor * tier.factor - 1);
    let failStatus = this.random() < tier.errorRate ? 500 : null;
    const p = this.plan;
    const culprit = (p.key === "http.route" ? route : (attributes[p.key] ?? resource[p.key])) === p.value;
    if (culprit && startMs >= p.fromMs && startMs < p.toMs && this.random() < p.share) {
      if (p.effect === "slow") extraMs += lognormalMs(this.random, 1500, 4000);
      else failStatus = this.random() < 0.5 ? 500 : 503;
    }
    return { attributes, pod: { name: pod.name, version: pod.version }, extraMs, failStatus };
  }
}

function pick<T extends { weight: number }>(items: T[], u: number): T {
  for (const item of items) if ((u -= item.weight) < 0) return item;
  return items[items.length - 1]!;
}

const Z99 = 2.3263478740408408;

function lognormalMs(random: () => number, median: number, p99: number): number {
  const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return median * Math.exp((Math.log(p99 / median) / Z99) * normal);
}

/** What `--incident` asks for: a kind, and optionally its effect (`pod`, `pod:slow`, `route:errors`). */
export interface IncidentSpec {
  kind: IncidentKind;
  effect?: IncidentEffect;
}

export function parseIncident(text: string): IncidentSpec {
  const [kind, effect, ...rest] = text.split(":");
  if (!(INCIDENT_KINDS as readonly string[]).includes(kind!) || rest.length > 0) {
    throw new Error(`unknown incident ${JSON.stringify(text.slice(0, 40))}: use one of ${INCIDENT_KINDS.join(", ")}, optionally with :slow or :errors (e.g. pod:slow)`);
  }
  if (effect !== undefined && effect !== "slow" && effect !== "errors") {
    throw new Error(`unknown effect ${JSON.stringify(effect.slice(0, 40))} in ${JSON.stringify(text.slice(0, 40))}: use :slow or :errors (e.g. ${kind}:slow)`);
  }
  return effect === undefined ? { kind: kind as IncidentKind } : { kind: kind as IncidentKind, effect };
}
