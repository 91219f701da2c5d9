// The login form: the token for a session cookie, then on to the page asked for.

function nextPage() {
  const target = new URLSearchParams(location.search).get("next") || "/";
  const unsafe = !target.startsWith("/") || target.startsWith("//") || target.startsWith("/\\") ||
    /[\u0000-\u001f\u007f]/.test(target);
  return unsafe ? "/" : target;
}

const form = document.querySelector("#login");
const message = document.querySelector("#login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.hidden = true;
  const response = await fetch("/api/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: form.token.value }),
  });
  if (response.ok) {
    localStorage.setItem("pgsyslog.session", "1");
    location.replace(nextPage());
    return;
  }
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  message.textContent = response.status === 401 ? "Wrong token." : (body?.error ?? `HTTP ${response.status}`);
  message.hidden = false;
  form.token.select();
});
form.token.focus();
