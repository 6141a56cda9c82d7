// The trial page: preload, show each image, take answers by key or button, and never lose one.
//
// Every answer goes into an outbox in localStorage before it is sent, and stays there until the
// server acknowledges it (retrying with exponential backoff through network drops). On load the
// page resumes at the first trial that is neither acknowledged by the server (listed in the page)
// nor waiting in the outbox, so a refresh or a browser crash continues where the participant was.
// Completion is asked for only when the outbox is empty; the server refuses it while any answer
// is missing and names the gaps, which are then asked again.

const data = JSON.parse(document.getElementById("study-data").textContent);
const $ = (id) => document.getElementById(id);
const answerGroups = [...document.querySelectorAll(".buttons[data-task]")];
const OUTBOX_KEY = `study-outbox:${data.session}`;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
const FEEDBACK_MS = 1200;

const answered = new Set(data.answered);
const outbox = new Map(JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]"));
for (const index of answered) outbox.delete(index);
const rejected = new Set(); // refused by the server: asked again once the rest are done
const images = new Map(); // url -> decoded <img>
let retryDelay = FIRST_RETRY_MS;
let retryTimer = null;
let sending = false;
let current = null; // the trial on screen
let onset = null; // performance.now() time the current question reached the screen
let accepting = false;
let refocus = false; // the answer came from a focused button: focus the next question
let typed = ""; // the class number being typed (data.typed_keys: more than ten classes), answered by Enter
const typedDigits = String(data.classes.length - 1).length; // no class number is longer

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const saveOutbox = () => localStorage.setItem(OUTBOX_KEY, JSON.stringify([...outbox]));

// --- sending ---------------------------------------------------------------------------------

function scheduleRetry() {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(flush, retryDelay * (0.5 + Math.random()));
  retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
}

async function flush() {
  if (sending) return;
  sending = true;
  try {
    while (outbox.size) {
      const [index, payload] = outbox.entries().next().value;
      let response;
      try {
        response = await fetch(data.answers_url, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(payload), keepalive: true,
        });
      } catch (networkError) {
        scheduleRetry();
        return;
      }
      if (response.status >= 500 || response.status === 408 || response.status === 429) {
        scheduleRetry();
        return;
      }
      const body = await response.json().catch(() => ({}));
      outbox.delete(index);
      saveOutbox();
      retryDelay = FIRST_RETRY_MS;
      if (response.ok || (response.status === 409 && !body.next)) {
        answered.add(index); // a 409 without `next`: the server already holds an answer here
      } else if (!body.next) {
        rejected.add(index);
        console.warn(`answer ${index} refused: ${body.error || response.status}`);
      }
      if (body.next) { // the session ended (screened out by this answer, withdrawn in another tab)
        location.assign(body.next);
        return;
      }
    }
  } finally {
    sending = false;
    showSaving();
  }
}

let finishing = false; // the last answer is given: saving the rest, then asking for completion

function showSaving() {
  $("saving").textContent = outbox.size && !navigator.onLine
    ? "You seem to be offline. Your answers are kept and will be sent when the connection returns."
    : finishing ? "Saving your answers…" : "";
}

addEventListener("online", () => { retryDelay = FIRST_RETRY_MS; flush(); });
addEventListener("offline", showSaving);
addEventListener("pagehide", flush);
document.addEventListener("visibilitychange", () => { if (document.hidden) flush(); });

// --- preparing -------------------------------------------------------------------------------

async function preload(urls) {
  let done = 0;
  await Promise.all(urls.map(async (url) => {
    for (let attempt = 0; ; attempt++) {
      const img = new Image();
      img.src = url;
      img.alt = data.image_alt;
      img.id = "stimulus";
      try {
        await img.decode(); // decoded before its trial, so showing it costs no decode time
        // Its own proportions, for the square frame to letterbox (study.css), not stretch.
        [img.width, img.height] = [img.naturalWidth, img.naturalHeight];
        img.className = img.naturalHeight > img.naturalWidth ? "tall" : "wide";
        images.set(url, img);
        $("loading").textContent = `Loading the images… ${++done} of ${urls.length}`;
        return;
      } catch (error) {
        if (attempt === 4) throw new Error(`image ${url} failed to load`);
        await sleep(FIRST_RETRY_MS * 2 ** attempt);
      }
    }
  }));
}

function frameMs() {
  // Median interval of a few animation frames: the display's refresh period.
  return new Promise((resolve) => {
    const stamps = [];
    const tick = (t) => {
      stamps.push(t);
      if (stamps.length < 12) return requestAnimationFrame(tick);
      const gaps = stamps.slice(1).map((t2, k) => t2 - stamps[k]).sort((a, b) => a - b);
      resolve(gaps[Math.floor(gaps.length / 2)]);
    };
    requestAnimationFrame(tick);
  });
}

async function sendEnvironment() {
  const body = {
    viewport_width: innerWidth, viewport_height: innerHeight,
    device_pixel_ratio: devicePixelRatio, frame_ms: Math.min(Math.max(await frameMs(), 1), 1000),
  };
  fetch(data.environment_url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    .catch(() => {}); // device details are nice to have; answers never wait for them
}

// --- trials ----------------------------------------------------------------------------------

const nextTrial = () => data.trials.find((t) => !answered.has(t.i) && !outbox.has(t.i) && !rejected.has(t.i));
const imageNumber = (trial) => Math.floor(trial.i / data.tasks_per_image);
const practiceImages = data.trials.filter((t) => t.block === "practice").length / data.tasks_per_image;
const totalImages = data.trials.length / data.tasks_per_image;

// Whether `value` is an answer to a question of this task: a class's label, or a point on the scale.
const onScale = (task, value) => Number.isInteger(value)
  && (task === "label" ? value >= 0 && value < data.classes.length : value >= data.rating.min && value <= data.rating.max);
// The right answer, as practice feedback names it ("this is a 7"; "the answer is square").
const rightAnswer = (label) => (data.digits ? `this is a ${label}` : `the answer is ${data.classes[label]}`);

function show(trial) {
  const newImage = !current || imageNumber(current) !== imageNumber(trial);
  const block = trial.block === "practice";
  current = trial;
  accepting = false;
  requestAnimationFrame(() => {
    $("feedback").textContent = "";
    $("pause").hidden = true;
    $("trial").hidden = false;
    $("trial").inert = false;
    if (newImage) document.querySelector(".stimulus-frame").replaceChildren(images.get(trial.image));
    const rating = trial.task === "rate";
    $("question").textContent = rating
      ? data.rating.question.replace(/\{(class|digit)\}/g, trial.target)
      : data.label_question;
    // Only this question's controls exist on screen; the other group is gone (display: none), so
    // it can be neither clicked nor reached by Tab.
    for (const group of answerGroups) group.hidden = group.dataset.task !== trial.task;
    // A participant answering by Tab and Enter lost the focus with the group it was in: the next
    // Tab starts from the question, just before the new buttons.
    if (refocus) $("question").focus({ preventScroll: true });
    refocus = false;
    typed = "";
    showHint();
    const number = imageNumber(trial) + 1;
    // The bar and the words count the same thing: this block's images (practice, then main).
    const [first, count] = block ? [0, practiceImages] : [practiceImages, totalImages - practiceImages];
    $("progress").value = (trial.i - first * data.tasks_per_image) / (count * data.tasks_per_image);
    $("progress-text").textContent = block
      ? `Practice image ${number} of ${practiceImages}`
      : `Image ${number - practiceImages} of ${totalImages - practiceImages}`;
    $("block-note").textContent = block ? `Practice: after each answer we show you the right ${data.digits ? "digit" : "answer"}.` : "";
    // This callback's changes are painted in this frame; the next frame's timestamp is when they
    // are on screen. Reaction times count from there, and answers are taken only from then on.
    requestAnimationFrame((paintedAt) => {
      onset = paintedAt;
      accepting = true;
      // Which trial is on screen and ready: for the browser tests, and handy when debugging.
      Object.assign($("trial").dataset, { index: trial.i, task: trial.task, ready: "true" });
    });
  });
}

function showHint() {
  const last = data.classes.length - 1;
  for (const button of $("label-buttons").querySelectorAll("button")) {
    button.classList.toggle("typed", typed !== "" && Number(button.dataset.value) === Number(typed)); // "05" marks 5
  }
  if (current.task === "rate") {
    $("hint").textContent = `Press a key from ${data.rating.min} to ${data.rating.max}, or choose a point on the scale.`;
  } else if (!data.typed_keys) {
    $("hint").textContent = `Press a key from 0 to ${last}, or choose a button.`;
  } else if (!typed) {
    $("hint").textContent = `Type a class number from 0 to ${last} and press Enter, or choose a button.`;
  } else {
    const value = Number(typed);
    $("hint").textContent = value <= last
      ? `You typed ${typed} (${data.classes[value]}): press Enter to answer, Backspace to change it.`
      : `You typed ${typed}: there is no class ${typed} (0 to ${last}); press Backspace to change it.`;
  }
}

// `task` is the task of the control that answered (a key answers whatever is asked): an answer
// counts only for a question of that task and only with a value that question offers.
function respond(task, value, eventTime) {
  if (!accepting || !current || task !== current.task || !onScale(task, value)) return;
  accepting = false;
  $("trial").dataset.ready = "false";
  // Until the next question is painted (during practice feedback, for a while) nothing answers.
  refocus = $("trial").contains(document.activeElement);
  $("trial").inert = true;
  const trial = current;
  const respondedAt = Math.max(eventTime, onset);
  outbox.set(trial.i, {
    client_id: crypto.randomUUID(), trial_index: trial.i, stimulus: trial.stimulus, response: value,
    rt_ms: respondedAt - onset,
    presented_at: performance.timeOrigin + onset, responded_at: performance.timeOrigin + respondedAt,
  });
  saveOutbox();
  flush();
  afterAnswer(trial, value);
}

async function afterAnswer(trial, value) {
  if (trial.correct !== undefined) {
    $("feedback").textContent = value === trial.correct
      ? `Correct: ${rightAnswer(trial.correct)}.`
      : `Not quite: ${rightAnswer(trial.correct)}.`;
    await sleep(FEEDBACK_MS);
  }
  const next = nextTrial();
  if (!next) return finish();
  const imagesDone = imageNumber(next) - practiceImages;
  if (next.block === "main" && trial.block === "practice") {
    $("feedback").textContent = "Practice is over. From now on there is no feedback.";
    await sleep(FEEDBACK_MS);
  } else if (data.break_every && imageNumber(next) !== imageNumber(trial) && imagesDone > 0
             && imagesDone % data.break_every === 0) {
    await pause();
  }
  show(next);
}

function pause() {
  $("trial").hidden = true;
  $("pause").hidden = false;
  $("resume").focus();
  return new Promise((resolve) => $("resume").addEventListener("click", resolve, { once: true }));
}

async function finish() {
  current = null;
  finishing = true;
  $("trial").hidden = true;
  $("progress").value = 1;
  $("feedback").textContent = "";
  showSaving();
  while (outbox.size) {
    flush();
    await sleep(250);
  }
  let response;
  try {
    response = await fetch(data.complete_url, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  } catch (networkError) {
    $("saving").textContent = "Waiting for the connection to finish saving…";
    await sleep(retryDelay);
    retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
    return finish();
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok || body.next) return location.assign(body.next);
  if (response.status === 409 && body.missing) {
    // The server lacks some answers (refused, or lost before they reached the outbox): ask again.
    for (const index of body.missing) { answered.delete(index); rejected.delete(index); }
    const next = nextTrial();
    if (next) { finishing = false; showSaving(); return show(next); }
  }
  await sleep(retryDelay);
  retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
  return finish();
}

// --- input -----------------------------------------------------------------------------------

// More than ten classes: digits build the class number on screen, Backspace edits it, Enter answers
// with it (a number no class has answers nothing). Enter with nothing typed is the focused button's.
function typeKey(event) {
  if (!accepting) return; // answered (practice feedback, the next question not yet painted): keys wait too
  if (/^[0-9]$/.test(event.key)) {
    if (typed.length < typedDigits) typed += event.key;
  } else if (event.key === "Backspace" && typed) {
    typed = typed.slice(0, -1);
  } else if (event.key === "Enter" && typed) {
    const value = Number(typed);
    if (onScale("label", value)) {
      typed = "";
      respond("label", value, event.timeStamp);
    }
  } else {
    return;
  }
  event.preventDefault();
  if (current) showHint();
}

addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || !current) return;
  if (data.typed_keys && current.task === "label") {
    if (!event.repeat || event.key === "Backspace") typeKey(event);
    return;
  }
  if (event.repeat || !/^[0-9]$/.test(event.key)) return;
  const value = Number(event.key);
  if (!onScale(current.task, value)) return;
  event.preventDefault();
  respond(current.task, value, event.timeStamp);
});

for (const group of answerGroups) {
  group.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-value]");
    if (button) respond(group.dataset.task, Number(button.dataset.value), event.timeStamp);
  });
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  flush(); // answers left in the outbox by an earlier page load go first
  const first = nextTrial();
  if (!first) return finish();
  const pending = data.trials.filter((t) => !answered.has(t.i));
  await preload([...new Set(pending.map((t) => t.image))]);
  $("loading").hidden = true;
  sendEnvironment();
  show(first);
}

start().catch((error) => {
  $("loading").textContent = `Something went wrong while loading (${error.message}). Please reload the page.`;
});
