// Calls to the server's JSON API; a 401 goes to the login page and back.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function loginUrl() {
  return `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

export async function getJson(path, params) {
  const text = params ? params.toString() : "";
  const response = await fetch(text ? `${path}?${text}` : path, {
    headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (response.status === 401) {
    location.assign(loginUrl());
    throw new ApiError(401, "log in first");
  }
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? `${path}: HTTP ${response.status}`);
  }
  return body;
}

export async function logout() {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
  location.assign("/login");
}
