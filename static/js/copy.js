// A button with data-copy="<id>" copies that element's text: the Clipboard API where the
// page is a secure context, else a selection and execCommand('copy') (plain-HTTP intranets).
for (const button of document.querySelectorAll('[data-copy]')) {
  button.addEventListener('click', async () => {
    const source = document.getElementById(button.dataset.copy);
    const status = button.parentElement.querySelector('[data-copy-status]');
    let copied = false;
    try {
      await navigator.clipboard.writeText(source.textContent);
      copied = true;
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied = document.execCommand('copy');
    }
    if (status) status.textContent = copied ? button.dataset.copied : button.dataset.failed;
  });
}
