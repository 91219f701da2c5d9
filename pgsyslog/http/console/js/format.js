// How values are shown: severities, facilities, times, sizes, raw bytes.

export const SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

export const FACILITIES = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
  "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
  "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"];

const pad = (n, width = 2) => String(n).padStart(width, "0");

// An ISO time in the browser's zone: 2026-12-02 14:03:07.123
export function localTime(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
    `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
}

// The value of an <input type=datetime-local> for a Date, and back to ISO (UTC).
export function toLocalInput(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function fromLocalInput(value) {
  if (!value) return "";
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

export function severityLabel(n) {
  return SEVERITIES[n] ?? String(n);
}

export function facilityLabel(n) {
  return FACILITIES[n] ?? String(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function count(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
}

// Raw bytes (base64) as text: UTF-8 where it is, control characters as \xNN escapes.
export function decodeRaw(base64) {
  const binary = atob(base64);
  const data = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
