// The standard gRPC health service (grpc.health.v1) on the query port, for Kubernetes gRPC probes,
// grpc_health_probe and load balancers. Check is answered without a token (a probe carries no
// credentials, and "serving" tells nobody anything about the telemetry). Watch is not: it holds its
// stream open until shutdown, and open streams without a token would let anyone fill the port's
// connections.
import { create, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";

/** The one method a client may call without the bearer token, as "service/method". */
export const PUBLIC_METHOD = `${Health.typeName}/${Health.method.check.name}`;

/**
 * Health routes for `services`. "" (the server as a whole) and each served service are SERVING
 * while the colony runs; a shutdown ends Watch streams (the call's signal) and refuses new calls.
 */
export function healthRoutes(services: DescService[]): (router: ConnectRouter) => void {
  const known = new Set(["", Health.typeName, ...services.map((s) => s.typeName)]);
  return (router) =>
    router.service(Health, {
      check(req) {
        if (!known.has(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return create(HealthCheckResponseSchema, { status: Status.SERVING });
      },
      async *watch(req, ctx) {
        yield create(HealthCheckResponseSchema, { status: known.has(req.service) ? Status.SERVING : Status.SERVICE_UNKNOWN });
        // Statuses change only when the colony stops, which ends the call.
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          else ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      },
    });
}
