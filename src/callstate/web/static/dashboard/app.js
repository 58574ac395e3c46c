// The dashboard's router: #/calls, #/call/<session id>, #/quality; asks for the token.

import { Unauthorized, adoptTokenFromAddress, forgetToken, setToken, token } from "./api.js";
import { esc } from "./format.js";
import { showCall } from "./call.js";
import { showCalls } from "./calls.js";
import { showQuality } from "./quality.js";

const view = document.getElementById("view");

function signIn(message) {
  document.documentElement.dataset.rendered = "signin";
  view.replaceChildren(document.getElementById("signin").content.cloneNode(true));
  const form = view.querySelector("form");
  if (message) {
    const p = form.querySelector(".error");
    p.textContent = message;
    p.hidden = false;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(new FormData(form).get("token").trim());
    route();
  });
}

let routing = 0; // the latest route; a slower earlier one must not draw over it

async function route() {
  const mine = ++routing;
  const stale = () => mine !== routing;
  delete document.documentElement.dataset.rendered;
  document.getElementById("signout").hidden = !token();
  if (!token()) return signIn();
  const [path, query = ""] = window.location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const page = path.startsWith("/call/") ? "call" : path === "/quality" ? "quality" : "calls";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("on", a.dataset.nav === page || (page === "call" && a.dataset.nav === "calls"));
  }
  try {
    if (page === "call") await showCall(view, decodeURIComponent(path.slice("/call/".length)), params, stale);
    else if (page === "quality") await showQuality(view, params, stale);
    else await showCalls(view, params, stale);
  } catch (err) {
    if (stale()) return;
    if (err instanceof Unauthorized) {
      forgetToken();
      return signIn("That token was refused: " + err.message);
    }
    view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
    document.documentElement.dataset.rendered = "error";
  }
}

document.getElementById("signout").addEventListener("click", () => {
  forgetToken();
  route();
});
window.addEventListener("hashchange", route);
adoptTokenFromAddress();
route();
