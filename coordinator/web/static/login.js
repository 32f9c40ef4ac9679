// The desk's login: the session cookie is HttpOnly, so the page only learns the user,
// the role and the CSRF token the desk's script asks for again at /api/session.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const next = new URLSearchParams(location.search).get("next") || "/supervisor";
  const target = next.startsWith("/") && !next.startsWith("//") ? next : "/supervisor";
  $("login").onsubmit = async (ev) => {
    ev.preventDefault();
    $("submit").disabled = true;
    $("message").textContent = "";
    try {
      await hallq.getJSON("/api/login", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({user: $("user").value, password: $("password").value})});
      location.assign(target);
    } catch (e) {
      $("message").textContent = e.message;
      $("message").className = "error";
      $("password").value = "";
    } finally {
      $("submit").disabled = false;
    }
  };
})();
