// Keeps the dashboard live: reloads the page every 15 s while the box is ticked (a researcher can
// stop it, which a <meta> refresh would not allow, WCAG 2.2.1).
const box = document.getElementById("auto-refresh");
setInterval(() => { if (box && box.checked) location.reload(); }, 15000);
