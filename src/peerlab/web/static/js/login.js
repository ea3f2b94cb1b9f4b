// The login form: shows why the last try failed, and logs in by itself when
// the page was opened as /login#token=... (the fragment never leaves the browser).
const form = document.getElementById("login-form");
const secret = document.getElementById("secret");
const error = document.getElementById("login-error");

const reasons = {
  wrong: "Wrong token or password.",
  busy: "Too many failed logins: wait a minute and try again.",
  expired: "Your session ended (the node restarted with a new key, or you logged out). Log in again.",
};
const why = new URLSearchParams(location.search).get("error");
if (why && reasons[why]) {
  error.textContent = reasons[why];
  error.hidden = false;
}
const hash = new URLSearchParams(location.hash.slice(1));
const token = hash.get("token");
if (token) {
  history.replaceState(null, "", location.pathname);
  secret.value = token;
  form.submit();
}
