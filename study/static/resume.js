// A plain study link carries no participant id, so the browser remembers its session: every
// session page stores its address, and the entry page then offers to continue that session after
// a crash or a closed tab. It offers rather than redirects, because a shared lab computer may
// serve the next participant, who must be able to start their own session.
const session = document.querySelector('meta[name="study-session"]');
if (session) {
  localStorage.setItem(`study-session:${session.dataset.study}`, session.content);
}
const offer = document.getElementById("resume");
const remembered = offer && localStorage.getItem(`study-session:${offer.dataset.study}`);
if (remembered) {
  offer.querySelector("a").href = remembered;
  offer.hidden = false;
}
