// Keeps a researcher page live: reloads it every 15 s while the box is ticked (a researcher can
// stop it, which a <meta> refresh would not allow, WCAG 2.2.1). The choice survives the reload,
// and the page's place (sort, page) is in its URL, so a reload keeps where the researcher was.
const box = document.getElementById("auto-refresh");
if (box) {
  box.checked = sessionStorage.getItem("dashboard-refresh") !== "off";
  box.addEventListener("change", () => sessionStorage.setItem("dashboard-refresh", box.checked ? "on" : "off"));
  setInterval(() => { if (box.checked) location.reload(); }, 15000);
}
