// Administration pages: copy a token shown once to the clipboard.
"use strict";
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch (e) {
      // No clipboard access (plain http): the text is selected, Ctrl+C copies it.
      button.textContent = "Selected: press Ctrl+C";
    }
  });
});
