// The behaviour behind every generated `coral query …` command. The generated specs
// (gen/…/query_cli.ts, typed by surface/cli.ts) declare each command's flags and a table of
// variants from the proto annotations; queryCommand() makes a command of one, which turns the
// flags into a request, calls the colony and renders.
import { create, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { Command, Option, UsageError, type CommandClass } from "clipanion";
import { toPlain, type Plain } from "../../surface/plain.js";
import { tableRows } from "../../surface/table.js";
import { checkBounds, fieldValue } from "../../surface/arguments.js";
import { UnitParseError } from "../../surface/units.js";
import type { CommandOption, CommandSpec, Variant, VariantParam } from "../../surface/cli.js";
import { ColonyClient } from "./client.js";
import { resolveColony } from "./colony-address.js";
import { CoralCommand } from "./command.js";
import { describeRpcError } from "./errors.js";
import { formatCsv, formatJson, formatTable, outputFormats, type OutputFormat, type TableView } from "./render.js";
import { resolveToken } from "./token.js";
import { colonyTransport } from "./transport.js";
import { formatWaterfall } from "./waterfall.js";

/**
 * The flag's value, if the proto's bounds allow it. Zero is how the API says "the default" (proto3
 * cannot tell it from unset), so a field with a default takes 0 and the colony fills it in.
 */
function flagValue(p: VariantParam, text: string): unknown {
  const value = fieldValue(p.parse, text);
  if (!(Number(value) === 0 && p.default !== undefined)) checkBounds(p, value, text);
  return value;
}

type Row = Record<string, Plain>;

const WATERFALL_WIDTH = 80;

abstract class QueryCommand extends CoralCommand {
  output = Option.String("--output,-o", "table", {
    description: "Output format: table (aligned, human units, fits the terminal), wide (every column, whole), json (raw values) or csv",
  });
  colony = Option.String("--colony", {
    description: "Colony address HOST:PORT (default: $CORAL_COLONY_ADDR, then 127.0.0.1:9090)",
  });
  token = Option.String("--token", {
    description: "Bearer token for the colony; visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", {
    description: "File holding the bearer token (default: $CORAL_TOKEN)",
  });

  protected abstract readonly variants: Variant[];

  /** A flag's value: its text, or true/false for a boolean field's switch. */
  private flagText(prop: string): string | boolean | undefined {
    return (this as unknown as Record<string, string | boolean | undefined>)[prop];
  }

  private pickVariant(): Variant {
    // A switch (`--error-rate`) or a parameter of the variant's own (`--by KEY`, even `--by ""`) selects it.
    const given = (v: Variant) => {
      const value = v.select === undefined ? undefined : this.flagText(v.select);
      return value !== undefined && value !== false;
    };
    const chosen = this.variants.filter(given);
    if (chosen.length > 1) {
      throw new UsageError(`choose one of ${chosen.map((v) => v.selectFlag).join(", ")}`);
    }
    const variant = chosen[0] ?? this.variants.find((v) => v.isDefault);
    if (!variant) {
      throw new UsageError(`choose one of ${this.variants.map((v) => v.selectFlag).join(", ")}`);
    }
    // A flag of another variant would be silently ignored: refuse it instead.
    const own = new Set(variant.params.map((p) => p.prop));
    for (const other of this.variants) {
      for (const p of other.params) {
        if (!own.has(p.prop) && this.flagText(p.prop) !== undefined) {
          throw new UsageError(`${p.flag} does not apply${variant.selectFlag ? ` with ${variant.selectFlag}` : ""}`);
        }
      }
    }
    return variant;
  }

  private request(variant: Variant): Record<string, unknown> {
    const init: Record<string, unknown> = {};
    for (const p of variant.params) {
      const text = this.flagText(p.prop) ?? p.default;
      if (text === undefined) continue;
      if (typeof text === "boolean") {
        init[p.field] = text;
        continue;
      }
      try {
        init[p.field] = flagValue(p, text);
        // The SDK takes fractions (0.99); here 0.99 is a valid but surprising percentile.
        if (p.parse === "percent" && Number(text) < 1) {
          const p99 = Number((Number(text) * 100).toPrecision(12));
          this.context.stderr.write(`(note: ${p.flag} ${text} is the ${text}th percentile; for p${p99} write ${p99})\n`);
        }
      } catch (e) {
        if (e instanceof UnitParseError) throw new UsageError(`${p.flag}: ${e.message}`);
        throw e;
      }
    }
    return init;
  }

  async run(): Promise<number> {
    if (!(outputFormats as readonly string[]).includes(this.output)) {
      throw new UsageError(`--output: "${this.output}" is not one of ${outputFormats.join(", ")}`);
    }
    const format = this.output as OutputFormat;
    const variant = this.pickVariant();
    const input = create(variant.method.input, this.request(variant));
    const colony = resolveColony(this.colony);
    const token = resolveToken({ token: this.token, tokenFile: this.tokenFile }, this.context.stderr);
    const client = createClient(variant.method.parent, colonyTransport(new ColonyClient(colony, token)));
    const call = (client as unknown as Record<string, (req: unknown) => unknown>)[variant.method.localName];
    try {
      if (variant.method.methodKind === "server_streaming") {
        await this.printStream(variant, format, call(input) as AsyncIterable<unknown>);
      } else {
        this.printOne(variant, format, toPlain(variant.method.output, (await call(input)) as never) as Row);
      }
    } catch (err) {
      throw describeRpcError(err, colony.display);
    }
    return 0;
  }

  /** Row objects of a response, and the columns to show in `format`. */
  private rowsOf(variant: Variant, res: Row, format: OutputFormat, columns?: string[]): { rows: Row[]; columns: string[] } {
    const named = format === "table" ? variant.show : variant.wide;
    if (!variant.rows) return { rows: [res], columns: named };
    if (variant.columns) {
      const names = columns ?? ((res[variant.columns] ?? []) as Row[]).map((c) => String(c.name));
      return { rows: tableRows(names, res[variant.rows], variant.encoding ?? "list_values") as Row[], columns: names };
    }
    return { rows: (res[variant.rows] ?? []) as Row[], columns: named };
  }

  /**
   * How a table looks. `table` is for reading at a terminal: the default columns, times as ages,
   * cut to the terminal's width; `wide` has every column, whole. A SQL result keeps its own names
   * and times: the user chose them.
   */
  private tableView(variant: Variant, format: OutputFormat, columns: string[]): TableView {
    const sql = variant.columns !== undefined;
    const stdout = this.context.stdout as NodeJS.WriteStream;
    return {
      columns,
      units: variant.units,
      rawHeaders: sql,
      agesFrom: format === "table" && !sql ? new Date() : undefined,
      maxWidth: format === "table" && stdout.isTTY ? stdout.columns : undefined,
    };
  }

  private printOne(variant: Variant, format: OutputFormat, res: Row): void {
    const { rows, columns } = this.rowsOf(variant, res, format);
    const out = this.context.stdout;
    if (format === "json") {
      // Table-shaped results read best as row objects, like the SDK's db.query().
      out.write(formatJson(variant.columns ? { ...res, [variant.rows!]: rows } : res));
    } else if (format === "csv") {
      out.write(formatCsv(rows, columns));
    } else if (variant.layout === "waterfall") {
      out.write(this.waterfall(res, rows, format));
      this.footer(variant, res, rows.length);
    } else {
      out.write(formatTable(rows, this.tableView(variant, format, columns)).text);
      this.footer(variant, res, rows.length);
    }
  }

  /** A waterfall fits 80 columns (fewer on a narrower terminal); `wide` takes what it needs. */
  private waterfall(res: Row, rows: Row[], format: OutputFormat): string {
    const stdout = this.context.stdout as NodeJS.WriteStream;
    const width = Math.min(WATERFALL_WIDTH, stdout.isTTY && stdout.columns ? stdout.columns : WATERFALL_WIDTH);
    const duration = typeof res.duration_ns === "number" ? res.duration_ns : undefined;
    const traceId = typeof res.trace_id === "string" ? res.trace_id : undefined;
    return formatWaterfall(rows, { width, wide: format === "wide", traceDurationNs: duration, traceId });
  }

  /** Response-level facts about the rows (the proto's cli.total and cli.truncated) that a table has no column for. */
  private footer(variant: Variant, res: Row, shown: number): void {
    if (!variant.rows) return;
    const notes: string[] = [];
    const total = variant.total === undefined ? undefined : res[variant.total];
    if (typeof total === "number" && total !== shown) notes.push(`${shown} of ${total} shown`);
    if (this.truncated(variant, res)) notes.push("truncated at the row limit");
    if (shown === 0) notes.push("no rows");
    if (notes.length) this.context.stderr.write(`(${notes.join("; ")})\n`);
  }

  private truncated(variant: Variant, res: Row): boolean {
    return variant.truncated !== undefined && res[variant.truncated] === true;
  }

  private async printStream(variant: Variant, format: OutputFormat, stream: AsyncIterable<unknown>): Promise<void> {
    const out = this.context.stdout;
    let columns: string[] | undefined;
    // Table columns take their widths from the first batch: later rows cannot re-align
    // what is already printed.
    let widths: number[] | undefined;
    let total = 0;
    let truncated = false;
    for await (const msg of stream) {
      const res = toPlain(variant.method.output as DescMessage, msg as never) as Row;
      const page = this.rowsOf(variant, res, format, columns);
      const first = columns === undefined;
      columns ??= page.columns;
      total += page.rows.length;
      truncated ||= this.truncated(variant, res);
      if (format === "json") {
        // One JSON object per line: a stream can be larger than memory.
        for (const r of page.rows) out.write(JSON.stringify(r) + "\n");
      } else if (format === "csv") {
        out.write(formatCsv(page.rows, columns, first));
      } else {
        const t = formatTable(page.rows, this.tableView(variant, format, columns), widths);
        widths = t.widths;
        out.write(t.text);
      }
    }
    if (format === "table" || format === "wide") this.footer(variant, variant.truncated ? { [variant.truncated]: truncated } : {}, total);
  }
}

function optionOf(o: CommandOption): unknown {
  switch (o.kind) {
    case "positional":
      return Option.String({ name: o.metavar, required: true });
    case "string":
      return Option.String(o.flag, { arity: 1, description: o.description });
    case "boolean":
      return o.initial === undefined
        ? Option.Boolean(o.flag, { description: o.description })
        : Option.Boolean(o.flag, o.initial, { description: o.description });
  }
}

/** The command a generated spec describes; its flags are declared as clipanion finds them, on the instance. */
export function queryCommand(spec: CommandSpec): CommandClass {
  const Generated = class extends QueryCommand {
    static override paths = [spec.path];
    static override usage = Command.Usage(spec.usage);
    protected readonly variants = spec.variants;
    constructor() {
      super();
      for (const o of spec.options) (this as unknown as Record<string, unknown>)[o.prop] = optionOf(o);
    }
  };
  return Generated as unknown as CommandClass;
}
