// Destructive actions ask first: any form with data-confirm needs a yes before it is sent.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// Dialogs: a button with data-open-dialog opens one; data-close-dialog closes it.
document.addEventListener("click", function (event) {
  var opener = event.target.closest && event.target.closest("[data-open-dialog]");
  if (opener) {
    document.getElementById(opener.getAttribute("data-open-dialog")).showModal();
  }
  var closer = event.target.closest && event.target.closest("[data-close-dialog]");
  if (closer) {
    closer.closest("dialog").close();
  }
});

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("dialog[data-open-on-load]").forEach(function (dialog) { dialog.showModal(); });
});

// A typed confirmation: the button it names is enabled only while the exact word is typed.
document.addEventListener("input", function (event) {
  var word = event.target.getAttribute && event.target.getAttribute("data-confirm-word");
  if (word) {
    document.getElementById(event.target.getAttribute("data-enables")).disabled = event.target.value.trim() !== word;
  }
});

// Uploads with a progress bar: the form is sent by XHR so the browser can report bytes sent.
// The words come from the form (data-text-*), in the reader's language; {percent} is the number.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var barId = form.getAttribute && form.getAttribute("data-upload-progress");
  if (!barId || event.defaultPrevented) {
    return;
  }
  event.preventDefault();
  var bar = document.getElementById(barId);
  var text = document.getElementById(barId + "-text");
  bar.hidden = false;
  var xhr = new XMLHttpRequest();
  xhr.open("POST", form.action || window.location.href);
  xhr.upload.onprogress = function (e) {
    if (e.lengthComputable) {
      var percent = Math.floor(100 * e.loaded / e.total);
      bar.value = percent;
      text.textContent = form.getAttribute("data-text-uploading").replace("{percent}", percent);
    }
  };
  xhr.upload.onload = function () { text.textContent = form.getAttribute("data-text-checking"); };
  xhr.onload = function () {
    if (xhr.status < 400 && xhr.responseURL && xhr.responseURL !== window.location.href) {
      window.location.assign(xhr.responseURL);
    } else {
      document.open();
      document.write(xhr.responseText);
      document.close();
    }
  };
  xhr.onerror = function () { text.textContent = form.getAttribute("data-text-failed"); };
  xhr.send(new FormData(form));
});
