// The file page's actions: upload (with progress, drag and drop), new
// directory, rename and delete. Browsing and downloading need no script.
"use strict";

const listing = document.getElementById("listing");
const dir = listing.dataset.dir;
const status = document.getElementById("status");

function show(message, isError) {
  if (!status) return;
  status.textContent = message;
  status.className = isError ? "error" : "muted";
}

function join(directory, name) {
  return (directory === "/" ? "" : directory) + "/" + name;
}

async function post(url, body) {
  const response = await protectedFetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const progress = document.getElementById("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  const request = new XMLHttpRequest();
  request.open("POST", "/api/upload?dir=" + encodeURIComponent(dir));
  request.setRequestHeader("X-CSRF-Token", csrfToken());
  request.upload.addEventListener("progress", e => {
    if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total;
  });
  request.addEventListener("load", () => {
    if (request.status === 200) {
      show("Uploaded " + files.length + " file(s).", false);
      window.location.reload();
    } else {
      progress.hidden = true;
      show("Upload failed: " + request.responseText, true);
    }
  });
  request.addEventListener("error", () => show("Upload failed: the connection broke.", true));
  show("Uploading " + files.length + " file(s)…", false);
  request.send(form);
}

const picker = document.getElementById("upload-files");
if (picker) {
  picker.addEventListener("change", () => upload(picker.files));
  const zone = document.getElementById("upload");
  zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", e => {
    e.preventDefault();
    zone.classList.remove("dragging");
    upload(e.dataTransfer.files);
  });
  zone.addEventListener("submit", e => e.preventDefault());
}

const mkdirForm = document.getElementById("mkdir");
if (mkdirForm) {
  mkdirForm.addEventListener("submit", async e => {
    e.preventDefault();
    const name = document.getElementById("mkdir-name").value;
    try {
      await post("/api/mkdir", { dir, name });
      window.location.reload();
    } catch (err) {
      show("Could not create the directory: " + err.message, true);
    }
  });
}

function actionButton(label, className, handler) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.className = className;
  button.addEventListener("click", handler);
  return button;
}

for (const row of listing.querySelectorAll("tr[data-name]")) {
  const name = row.dataset.name;
  const cell = row.querySelector("td.actions");
  if (listing.dataset.canRename === "true") {
    cell.append(actionButton("rename", "secondary", async () => {
      const to = window.prompt("New name for " + name, name);
      if (!to || to === name) return;
      try {
        await post("/api/rename", { from: join(dir, name), to: join(dir, to) });
        window.location.reload();
      } catch (err) {
        show("Could not rename: " + err.message, true);
      }
    }));
  }
  if (listing.dataset.canDelete === "true") {
    cell.append(actionButton("delete", "danger", async () => {
      if (!window.confirm("Delete " + name + "?")) return;
      try {
        await post("/api/delete", { path: join(dir, name) });
        window.location.reload();
      } catch (err) {
        show("Could not delete: " + err.message, true);
      }
    }));
  }
}
