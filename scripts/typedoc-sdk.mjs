// TypeDoc plugin for the @coral/sdk site (`npm run docs`, typedoc.json): each SDK module
// (`coral.metrics` …, a `@namespace` object in the generated SDK) is one page with its functions
// in full — signature, parameters, result, example — instead of a page of links to a page per
// function. The RPC reference pages (docs/reference/rpc/) join the site under their own heading.
import { Converter, DefaultTheme, DefaultThemeRenderContext, JSX, KindRouter, ReflectionKind } from "typedoc";

const isModuleFunction = (r) => r.kindOf?.(ReflectionKind.Function) && r.parent?.kindOf(ReflectionKind.Namespace);

/** The default layout, except that a module's functions live on the module's page. */
class Router extends KindRouter {
  getPageKind(target) {
    return isModuleFunction(target) ? undefined : super.getPageKind(target);
  }
}

class Context extends DefaultThemeRenderContext {
  constructor(...args) {
    super(...args);
    const summaries = this.moduleReflection;
    // A namespace page lists its members as one-line summaries by default; an SDK module shows
    // them whole, as a class page shows its methods.
    this.moduleReflection = (mod) => {
      if (!mod.kindOf(ReflectionKind.Namespace)) return summaries(mod);
      return JSX.createElement(
        JSX.Fragment,
        null,
        mod.hasComment() && JSX.createElement("section", { class: "tsd-panel tsd-comment" }, this.commentSummary(mod), this.commentTags(mod)),
        this.members(mod),
      );
    };
  }
}

const API_REFERENCE = "Colony API reference";

class Theme extends DefaultTheme {
  ContextClass = Context;

  /** The SDK first in the sidebar; the RPC pages, which TypeDoc puts first, in one folder at the end. */
  buildNavigation(project) {
    const nav = super.buildNavigation(project);
    const documents = nav.filter((e) => e.kind === ReflectionKind.Document);
    const rest = nav.filter((e) => e.kind !== ReflectionKind.Document);
    return documents.length ? [...rest, { text: API_REFERENCE, children: documents }] : rest;
  }
}

export function load(app) {
  app.renderer.defineRouter("coral-sdk", Router);
  app.renderer.defineTheme("coral-sdk", Theme);
  app.converter.on(Converter.EVENT_CREATE_DOCUMENT, (_context, doc) => {
    doc.frontmatter.group ??= API_REFERENCE;
  });
}
