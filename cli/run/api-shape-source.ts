// The query API's shape computed from its generated descriptors: what the build inlines into the
// CLI bundle, and what coral run computes itself when it runs from its sources (tests under tsx).
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { shapeOf } from "./api-shape.js";

export const apiShape = shapeOf(QueryService);
