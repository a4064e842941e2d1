// gRPC server reflection on the query port: generic clients (grpcurl, buf curl, Postman, IDE
// plugins) list and call the colony's methods without .proto files. Both versions are served:
// v1 is current, v1alpha is what many deployed clients still ask for first. Their messages are the
// same shape, so the answers are built once as plain values and typed per version.
import { create, toBinary, type DescFile, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status codes the protocol puts in ErrorResponse.error_code. */
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer = MessageInitShape<typeof v1.ServerReflectionResponseSchema>["messageResponse"];

/** What reflection knows: the files behind the served services, with every file they import. */
class Catalog {
  private readonly byName = new Map<string, DescFile>();
  private readonly bySymbol = new Map<string, DescFile>();
  private readonly extensions: { extendee: string; number: number; file: DescFile }[] = [];

  constructor(readonly services: DescService[]) {
    for (const s of services) this.add(s.file);
  }

  private add(file: DescFile): void {
    const name = `${file.name}.proto`;
    if (this.byName.has(name)) return;
    this.byName.set(name, file);
    for (const d of file.dependencies) this.add(d);
    for (const s of file.services) {
      this.bySymbol.set(s.typeName, file);
      for (const m of s.methods) this.bySymbol.set(`${s.typeName}.${m.name}`, file);
    }
    for (const e of file.enums) this.bySymbol.set(e.typeName, file);
    const messages = [...file.messages];
    while (messages.length > 0) {
      const m = messages.pop()!;
      this.bySymbol.set(m.typeName, file);
      messages.push(...m.nestedMessages);
      for (const e of m.nestedEnums) this.bySymbol.set(e.typeName, file);
      for (const x of m.nestedExtensions) this.extensions.push({ extendee: x.extendee.typeName, number: x.number, file });
    }
    for (const x of file.extensions) {
      this.bySymbol.set(x.typeName, file);
      this.extensions.push({ extendee: x.extendee.typeName, number: x.number, file });
    }
  }

  /** The file and everything it imports, the file first, each once, serialized. */
  private closure(file: DescFile): Answer {
    const seen = new Set<DescFile>();
    const order: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f)) return;
      seen.add(f);
      order.push(f);
      f.dependencies.forEach(visit);
    };
    visit(file);
    return {
      case: "fileDescriptorResponse",
      value: { fileDescriptorProto: order.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
    };
  }

  answer(req: Request): Answer {
    const r = req.messageRequest;
    const notFound = (what: string): Answer => ({ case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.services.map((s) => ({ name: s.typeName })) } };
      case "fileByFilename": {
        const f = this.byName.get(r.value);
        return f ? this.closure(f) : notFound(`file ${r.value}`);
      }
      case "fileContainingSymbol": {
        const f = this.bySymbol.get(r.value.replace(/^\./, ""));
        return f ? this.closure(f) : notFound(`symbol ${r.value}`);
      }
      case "fileContainingExtension": {
        const x = this.extensions.find((e) => e.extendee === r.value.containingType && e.number === r.value.extensionNumber);
        return x ? this.closure(x.file) : notFound(`extension ${r.value.extensionNumber} of ${r.value.containingType}`);
      }
      case "allExtensionNumbersOfType": {
        const numbers = this.extensions.filter((e) => e.extendee === r.value).map((e) => e.number);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: numbers } };
      }
      default:
        return { case: "errorResponse", value: { errorCode: INVALID_ARGUMENT, errorMessage: "empty reflection request" } };
    }
  }
}

/** Routes for reflection (v1 and v1alpha) over `services`, which should include reflection itself. */
export function reflectionRoutes(services: DescService[]): (router: ConnectRouter) => void {
  const catalog = new Catalog([...services, v1.ServerReflection, v1alpha.ServerReflection]);
  return (router) => {
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield create(v1.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: catalog.answer(req) });
        }
      },
    });
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          const messageResponse = catalog.answer(req) as MessageInitShape<typeof v1alpha.ServerReflectionResponseSchema>["messageResponse"];
          yield create(v1alpha.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse });
        }
      },
    });
  };
}
