// Shared by every console page: the CSRF token and the sign-out button.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// fetch() with the session's CSRF token, as every state-changing request needs.
function protectedFetch(url, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-CSRF-Token", csrfToken());
  return fetch(url, { ...options, headers, credentials: "same-origin" });
}

document.addEventListener("DOMContentLoaded", () => {
  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await protectedFetch("/logout", { method: "POST" });
      window.location.assign("/login");
    });
  }
});
