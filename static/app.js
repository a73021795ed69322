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

// The dashboard's charts, drawn by uPlot (static/vendor/) from GET /api/v1/stats's `series`
// (fetched from #dashboard-charts[data-stats-url]): archive size and duration of each
// backup with one line per source, and the backups completed and failed per day. Every word comes
// from data-words, in the reader's language; colours come from the CSS variables, so the charts
// follow the light or dark scheme. The instances stay on window.cairnCharts.
(function () {
  var PALETTE = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5", "--chart-6", "--chart-7", "--chart-8"];
  var UNITS = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024], ["B", 1]];
  var DAY = 86400;
  var HEIGHT = 240;
  window.cairnCharts = {};

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function say(words, key, values) {
    return words[key].replace(/\{(\w+)\}/g, function (all, name) { return values[name]; });
  }

  function formatter(section, options) {
    var format = new Intl.DateTimeFormat(section.dataset.locale, Object.assign({timeZone: section.dataset.timezone}, options));
    return function (seconds) { return format.format(new Date(seconds * 1000)); };
  }

  function number(section, digits) {
    var format = new Intl.NumberFormat(section.dataset.locale, {maximumFractionDigits: digits});
    return function (value) { return format.format(value); };
  }

  // One x value per backup (oldest first) and, per source, that backup's value or null. Each
  // source's series holds parallel lists: backup_ids[i] was made at at[i].
  function perBackup(series, field, scale) {
    var backups = {};
    series.sources.forEach(function (source) {
      source.backup_ids.forEach(function (id, i) { backups[id] = Date.parse(source.at[i]) / 1000; });
    });
    var ids = Object.keys(backups).sort(function (a, b) { return backups[a] - backups[b] || a - b; });
    var index = {};
    ids.forEach(function (id, i) { index[id] = i; });
    var data = [ids.map(function (id) { return backups[id]; })];
    series.sources.forEach(function (source) {
      var values = ids.map(function () { return null; });
      source.backup_ids.forEach(function (id, i) {
        var value = source[field][i];
        values[index[id]] = value == null ? null : value / scale;
      });
      data.push(values);
    });
    return data;
  }

  function sizeUnit(series) {
    var largest = 0;
    series.sources.forEach(function (source) {
      source.size_bytes.forEach(function (size) { largest = Math.max(largest, size || 0); });
    });
    return UNITS.find(function (unit) { return largest >= unit[1]; }) || UNITS[UNITS.length - 1];
  }

  function axes(section, xLabel, yLabel, timeZone) {
    var day = formatter(section, {month: "short", day: "numeric", timeZone: timeZone || section.dataset.timezone});
    var time = formatter(section, {hour: "2-digit", minute: "2-digit", timeZone: timeZone || section.dataset.timezone});
    var common = {stroke: color("--muted"), grid: {stroke: color("--line"), width: 1}, ticks: {stroke: color("--line"), width: 1}};
    return [
      Object.assign({label: xLabel, values: function (u, splits, axis, space, incr) {
        return splits.map(function (s) { return incr >= DAY ? day(s) : time(s); });
      }}, common),
      Object.assign({label: yLabel, size: 60}, common)
    ];
  }

  function options(section, width, config) {
    var zone = config.timeZone || section.dataset.timezone;
    var dateTime = config.xValue || formatter(section, {dateStyle: "medium", timeStyle: "short"});
    return {
      width: width, height: HEIGHT, axes: config.axes, scales: config.scales || {},
      tzDate: function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), zone); },
      legend: {show: true}, cursor: {points: {size: 7}},
      series: [{label: config.xLabel, value: function (u, v) { return v == null ? "—" : dateTime(v); }}].concat(config.series)
    };
  }

  function sourceLines(series, valueText) {
    return series.sources.map(function (source, i) {
      var stroke = color(PALETTE[i % PALETTE.length]);
      return {label: source.source, stroke: stroke, width: 2, spanGaps: true,
              points: {show: true, size: 6, fill: stroke, stroke: stroke},
              value: function (u, v) { return v == null ? "—" : valueText(v); }};
    });
  }

  function sizeChart(section, words, series, width) {
    var unit = sizeUnit(series);
    var digits = number(section, 2);
    return [options(section, width, {
      xLabel: words.time, axes: axes(section, words.time, say(words, "size_axis", {unit: unit[0]})),
      series: sourceLines(series, function (v) { return digits(v) + " " + unit[0]; })
    }), perBackup(series, "size_bytes", unit[1])];
  }

  function durationChart(section, words, series, width) {
    var digits = number(section, 1);
    return [options(section, width, {
      xLabel: words.time, axes: axes(section, words.time, words.duration_axis),
      series: sourceLines(series, function (v) { return say(words, "seconds", {value: digits(v)}); })
    }), perBackup(series, "duration_seconds", 1)];
  }

  function daysChart(section, words, series, width) {
    var whole = number(section, 0);
    var day = formatter(section, {dateStyle: "medium", timeZone: "UTC"});
    var bars = function (align, variable) {
      var fill = color(variable);
      return {label: words[align < 0 ? "completed" : "failed"], stroke: fill, fill: fill, width: 0,
              paths: uPlot.paths.bars({size: [0.4, 24], align: align}), points: {show: false},
              value: function (u, v) { return v == null ? "—" : whole(v); }};
    };
    var dayAxes = axes(section, words.day, words.count_axis, "UTC");
    dayAxes[1].incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
    return [options(section, width, {
      xLabel: words.day, xValue: day, timeZone: "UTC", axes: dayAxes,
      // Half a day either side, so the first and last days' bars are drawn whole.
      scales: {x: {time: true, range: function (u, min, max) { return [min - DAY / 2, max + DAY / 2]; }},
               y: {range: function (u, min, max) { return [0, Math.max(1, max)]; }}},
      series: [bars(-1, "--ok"), bars(1, "--bad")]
    }), [series.days.map(function (d) { return Date.parse(d.date + "T00:00:00Z") / 1000; }),
         series.days.map(function (d) { return d.completed; }),
         series.days.map(function (d) { return d.failed; })]];
  }

  var CHARTS = {size: sizeChart, duration: durationChart, days: daysChart};

  function hasData(kind, series) {
    if (kind === "days") {
      return series.days.some(function (d) { return d.completed || d.failed; });
    }
    return series.sources.length > 0;
  }

  function draw(section, series) {
    var words = JSON.parse(section.dataset.words);
    Object.keys(window.cairnCharts).forEach(function (kind) { window.cairnCharts[kind].destroy(); });
    window.cairnCharts = {};
    Object.keys(CHARTS).forEach(function (kind) {
      var box = section.querySelector('[data-chart="' + kind + '"]');
      var shown = hasData(kind, series);
      box.hidden = !shown;
      section.querySelector('[data-empty-for="' + kind + '"]').hidden = shown;
      if (shown) {
        var made = CHARTS[kind](section, words, series, box.clientWidth || section.clientWidth);
        window.cairnCharts[kind] = new uPlot(made[0], made[1], box);
      }
    });
  }

  function section() {
    return document.getElementById("dashboard-charts");
  }

  var current = null;
  var drawnVersion;  // the live part's data-history-version the charts were drawn for; none yet

  function liveVersion() {
    var live = document.getElementById("dashboard-live");
    return live ? live.dataset.historyVersion : null;
  }

  // Fetch the series and draw; again whenever a backup has ended (or was deleted) since.
  function refresh() {
    var charts = section();
    var version = liveVersion();
    if (!charts || version === drawnVersion) {
      return;
    }
    drawnVersion = version;
    fetch(charts.dataset.statsUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && body.data) {
          current = body.data.series;
          draw(charts, current);
        }
      })
      .catch(function () { drawnVersion = undefined; });  // try again after the next poll
  }

  document.addEventListener("DOMContentLoaded", function () {
    var charts = section();
    if (!charts || typeof uPlot === "undefined") {
      return;
    }
    refresh();
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        Object.keys(window.cairnCharts).forEach(function (kind) {
          var chart = window.cairnCharts[kind];
          chart.setSize({width: chart.root.parentNode.clientWidth, height: HEIGHT});
        });
      }, 150);
    });
    // The reader's system switched between light and dark: draw again with the new colours.
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      if (current) {
        draw(charts, current);
      }
    });
    document.addEventListener("htmx:afterSettle", refresh);
  });
})();
