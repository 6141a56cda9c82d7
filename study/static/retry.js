// Every participant step rides out an outage, and an open page keeps its place.
//
// The step forms (consent, instructions, withdrawal) are sent with fetch instead of a plain
// submit, so a lost connection or a 5xx (a server restart, a 502 from nginx, a 503 for a held
// database lock, with its Retry-After) is retried with back-off while the page says so, instead
// of leaving the participant on the browser's error page. Repeating these posts is safe: the
// server resumes the session an earlier attempt made. When the server answers, the page goes
// where its redirects led, or shows what it sent (a "study is full" page, a 4xx message).
//
// The heartbeat: a page of an active session posts to <session>/heartbeat as often as the reply
// asks (study/heartbeat.py), so a slow reader's lease does not run out while the page is open.

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connectionNote(text) {
  let note = document.getElementById("connection-status");
  if (!note) {
    note = document.createElement("p");
    note.id = "connection-status";
    note.className = "notice";
    note.setAttribute("role", "status");
    document.querySelector("main").prepend(note);
  }
  note.textContent = text;
  note.hidden = !text;
}

function retryDelay(response, delay) {
  const after = Number(response && response.headers.get("Retry-After"));
  return after > 0 ? Math.min(after * 1000, MAX_RETRY_MS) : delay * (0.5 + Math.random());
}

async function sendForm(form, submitter) {
  const body = new URLSearchParams(new FormData(form, submitter));
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  for (let delay = FIRST_RETRY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
    let response = null;
    try {
      response = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
    } catch (networkError) { /* retried below */ }
    if (response && response.status < 500) {
      if (response.redirected) return location.assign(response.url);
      const page = await response.text();
      document.open();
      document.write(page);
      return document.close();
    }
    connectionNote("The connection to the study was interrupted. Your answer is kept; trying again…");
    await wait(retryDelay(response, delay));
  }
}

// The participant's steps only: the dashboard's forms (downloads among them) submit as usual.
const STEP = /^\/(study\/[^/]+\/consent|s\/[^/]+\/(instructions|withdraw))$/;

for (const form of document.querySelectorAll("main form[method=post]")) {
  const target = new URL(form.action, location.href);
  if (target.origin !== location.origin || !STEP.test(target.pathname)) continue;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendForm(form, event.submitter);
  });
}

const studySession = document.querySelector('meta[name="study-session"]');

async function heartbeat() {
  let next = 5; // seconds; the server's reply says how often once it answers
  try {
    const response = await fetch(`${studySession.content}/heartbeat`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    const body = await response.json().catch(() => ({}));
    if (body.next && new URL(body.next, location.href).pathname !== location.pathname) return location.assign(body.next);
    if (response.status < 500) next = body.every_s;
  } catch (networkError) { /* beat again soon */ }
  if (next) setTimeout(heartbeat, next * 1000);
}

if (studySession) heartbeat();
