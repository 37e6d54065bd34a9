// The report's 打印 button: the browser's print dialog (the page's own @media print lays it out on A4).
for (const button of document.querySelectorAll("[data-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
