// rescind console: the little that needs a script. Everything works without it; the script adds
// "select all", checks Yahoo!'s 10–200 character reason detail before the form is sent, and shows
// times in the browser's time zone (the page says UTC; the UTC time stays in the tooltip).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const locale = document.documentElement.lang === "ja" ? "ja-JP" : "en-GB";
  const format = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
  for (const time of document.querySelectorAll("time[datetime]")) {
    const at = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(at.getTime())) continue;
    time.title = time.textContent;
    time.textContent = format.format(at);
  }

  for (const master of document.querySelectorAll("[data-select-all]")) {
    const name = master.getAttribute("data-select-all");
    const boxes = () => master.form.querySelectorAll(`input[type=checkbox][name="${name}"]`);
    master.addEventListener("change", () => {
      for (const box of boxes()) box.checked = master.checked;
    });
    master.form.addEventListener("change", (event) => {
      if (event.target === master || event.target.name !== name) return;
      const all = [...boxes()];
      master.checked = all.length > 0 && all.every((box) => box.checked);
      master.indeterminate = !master.checked && all.some((box) => box.checked);
    });
  }

  // A reason whose option says data-detail-required makes the detail field of the same form part
  // required, 10 to 200 characters (H2).
  for (const select of document.querySelectorAll("select[data-reason-select]")) {
    const scope = select.closest("fieldset") || select.form;
    const detail = scope && scope.querySelector("[data-reason-detail]");
    if (!detail) continue;
    const update = () => {
      const option = select.selectedOptions[0];
      const required = Boolean(option && option.dataset.detailRequired === "true");
      detail.required = required;
      detail.minLength = required ? 10 : 0;
    };
    select.addEventListener("change", update);
    update();
  }
});
