// A bar chart of counts over time in SVG, drawn at the element's own pixel width.
// With onZoom, dragging over it (or clicking one bar) picks a time range.

import { svg } from "./dom.js";
import { localTime, count } from "./format.js";

export const INTERVAL_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const HEIGHT = 120;
const AXIS = 18; // px under the bars for the time labels
const MIN_DRAG = 4; // px: less than this is a click

function extent(buckets, interval) {
  const step = INTERVAL_MS[interval] ?? INTERVAL_MS.minute;
  const start = new Date(buckets[0].start).getTime();
  const end = new Date(buckets[buckets.length - 1].start).getTime() + step;
  return { start, end, step };
}

function label(ms, interval) {
  const text = localTime(new Date(ms).toISOString());
  return interval === "day" ? text.slice(0, 10) : text.slice(interval === "hour" ? 5 : 11, 16);
}

function drawAxis(root, range, width, interval) {
  const ticks = Math.max(2, Math.min(6, Math.floor(width / 140)));
  for (let i = 0; i <= ticks; i += 1) {
    const x = (i / ticks) * width;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    const text = svg("text", { x, y: HEIGHT - 4, "text-anchor": anchor, class: "axis" });
    text.textContent = label(range.start + (i / ticks) * (range.end - range.start), interval);
    root.append(text);
  }
}

function drawBars(root, buckets, range, width) {
  const top = Math.max(1, ...buckets.map((b) => b.count));
  const plot = HEIGHT - AXIS;
  const scale = width / (range.end - range.start);
  for (const bucket of buckets) {
    const start = new Date(bucket.start).getTime();
    const x = (start - range.start) * scale;
    const h = bucket.count ? Math.max(1, (bucket.count / top) * (plot - 12)) : 0;
    const bar = svg("rect", { x, y: plot - h, width: Math.max(1, range.step * scale - 1),
      height: h, class: "bar", "data-start": bucket.start, "data-count": bucket.count });
    const title = svg("title");
    title.textContent = `${localTime(bucket.start)}: ${count(bucket.count)}`;
    bar.append(title);
    root.append(bar);
  }
  const peak = svg("text", { x: 2, y: 10, class: "axis" });
  peak.textContent = buckets.some((b) => b.count) ? `max ${count(top)}` : "no rows in this range";
  root.append(peak);
}

function enableZoom(element, range, width, onZoom) {
  const band = svg("rect", { y: 0, height: HEIGHT - AXIS, width: 0, class: "band" });
  element.append(band);
  const at = (event) => {
    const box = element.getBoundingClientRect();
    return Math.min(width, Math.max(0, event.clientX - box.left));
  };
  const time = (x) => range.start + (x / width) * (range.end - range.start);
  let from = null;
  element.onpointerdown = (event) => {
    from = at(event);
    element.setPointerCapture(event.pointerId);
    band.setAttribute("x", from);
    band.setAttribute("width", 0);
  };
  element.onpointermove = (event) => {
    if (from === null) return;
    const x = at(event);
    band.setAttribute("x", Math.min(from, x));
    band.setAttribute("width", Math.abs(x - from));
  };
  element.onpointerup = (event) => {
    if (from === null) return;
    const to = at(event);
    const [a, b] = [Math.min(from, to), Math.max(from, to)];
    from = null;
    band.setAttribute("width", 0);
    if (b - a < MIN_DRAG) {
      const start = range.start + Math.floor((time(a) - range.start) / range.step) * range.step;
      onZoom(new Date(start), new Date(start + range.step));
    } else {
      onZoom(new Date(Math.floor(time(a) / 1000) * 1000), new Date(Math.ceil(time(b) / 1000) * 1000));
    }
  };
}

// Draw {interval, buckets} into the <svg> element; onZoom(sinceDate, untilDate) or null.
export function drawChart(element, histogram, onZoom = null) {
  element.replaceChildren();
  const width = Math.max(100, Math.floor(element.getBoundingClientRect().width));
  element.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  element.setAttribute("height", HEIGHT);
  const buckets = histogram?.buckets ?? [];
  if (!buckets.length) return;
  const range = extent(buckets, histogram.interval);
  drawBars(element, buckets, range, width);
  drawAxis(element, range, width, histogram.interval);
  if (onZoom) enableZoom(element, range, width, onZoom);
}
