// Top hosts, apps and severities of the current query; a click adds one as a filter.

import { getJson } from "./api.js";
import { h } from "./dom.js";
import { count } from "./format.js";

function item(facet, entry, onPick) {
  const text = facet === "severity" ? entry.label : entry.value;
  const shown = text === null || text === "" ? "(none)" : text;
  return h("li", {}, h("button", { type: "button", "data-facet-value": shown,
    class: facet === "severity" ? `sev-${entry.value}` : null,
    disabled: text === null || text === "", onclick: () => onPick(facet, entry) },
  h("span", { class: "facet-name" }, shown), h("span", { class: "facet-count" }, count(entry.count))));
}

// isCurrent() says whether the answer is still wanted (the search may have changed meanwhile).
export async function loadFacets(root, params, onPick, isCurrent = () => true) {
  const query = new URLSearchParams(params);
  query.set("limit", 10);
  const answer = await getJson("/api/facets", query);
  if (!isCurrent()) return;
  for (const facet of ["host", "app", "severity"]) {
    const list = root.querySelector(`[data-facet=${facet}]`);
    const entries = answer[facet] ?? [];
    list.replaceChildren(...(entries.length ? entries.map((e) => item(facet, e, onPick))
      : [h("li", { class: "none" }, "—")]));
  }
}

export function clearFacets(root) {
  for (const list of root.querySelectorAll("[data-facet]")) list.replaceChildren();
}
