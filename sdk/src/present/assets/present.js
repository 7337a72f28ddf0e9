// sinew present: navigation, the presenter view, and running blocks with their output
// streamed into the slide. No dependencies, nothing fetched but this deck's own server.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const stage = document.getElementById("stage");
  const slides = Array.from(stage.querySelectorAll("section"));
  const presenter = new URLSearchParams(location.search).has("presenter");
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("sinew-present " + location.pathname) : null;
  let current = 0;
  const startedAt = Date.now();

  // ---- showing one slide, scaled to the window
  function fit() {
    if (presenter) {
      const scale = Math.min((window.innerWidth * 0.55) / 1280, (window.innerHeight - 32) / 720);
      stage.style.transform = "scale(" + scale + ")";
      return;
    }
    const scale = Math.min(window.innerWidth / 1280, window.innerHeight / 720);
    stage.style.transform = "translate(-50%, -50%) scale(" + scale + ")";
  }
  function show(n, fromPeer) {
    n = Math.max(0, Math.min(slides.length - 1, n));
    if (n !== current) leaving(slides[current]);
    slides.forEach((s, i) => s.classList.toggle("current", i === n));
    current = n;
    if (location.hash !== "#" + n) history.replaceState(null, "", "#" + n);
    document.title = config.title + (n ? " (" + n + ")" : "");
    if (presenter) showNotes();
    if (channel && !fromPeer) channel.postMessage({ slide: n });
  }
  function showNotes() {
    const notes = document.getElementById("notes");
    const aside = slides[current].querySelector("aside.notes");
    const next = slides[current + 1];
    const minutes = Math.floor((Date.now() - startedAt) / 60000);
    notes.innerHTML = "";
    const timer = document.createElement("div");
    timer.className = "timer";
    timer.textContent = "slide " + current + " of " + (slides.length - 1) + " · " + minutes + " min";
    notes.appendChild(timer);
    if (aside) notes.appendChild(aside.cloneNode(true)).style.display = "block";
    const upcoming = document.createElement("div");
    upcoming.className = "next";
    upcoming.textContent = next ? "next: " + (next.dataset.title || "(untitled)") : "last slide";
    notes.appendChild(upcoming);
  }
  if (channel) channel.onmessage = (e) => show(e.data.slide, true);
  window.addEventListener("hashchange", () => show(parseInt(location.hash.slice(1), 10) || 0));
  window.addEventListener("resize", fit);

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }
  document.addEventListener("keydown", (e) => {
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    const keys = {
      ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1, Enter: 1, j: 1,
      ArrowLeft: -1, ArrowUp: -1, PageUp: -1, Backspace: -1, k: -1,
    };
    if (e.key in keys) show(current + (e.shiftKey && e.key === " " ? -1 : keys[e.key]));
    else if (e.key === "Home") show(0);
    else if (e.key === "End") show(slides.length - 1);
    else if (e.key === "f") fullscreen();
    else if (e.key === "p") window.open(location.pathname + "?presenter" + location.hash, "sinew-presenter");
    else return;
    e.preventDefault();
  });
  function fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => {});
  }

  // ---- output: ANSI colours to spans
  function appendText(pane, text, cls) {
    const parts = text.replace(/\r(?!\n)/g, "").split(/\x1b\[([0-9;]*)([A-Za-z])/);
    let style = pane._style || [];
    for (let i = 0; i < parts.length; i += 3) {
      if (parts[i]) {
        const span = document.createElement("span");
        span.className = [cls].concat(style).join(" ");
        span.textContent = parts[i];
        pane.appendChild(span);
      }
      if (parts[i + 2] === "m") style = sgr(style, parts[i + 1]);
    }
    pane._style = style;
  }
  function sgr(style, codes) {
    for (const code of (codes || "0").split(";").map(Number)) {
      if (code === 0) style = [];
      else if (code === 1) style = style.concat("b");
      else if (code === 2) style = style.concat("dim");
      else if (code === 22) style = style.filter((s) => s !== "b" && s !== "dim");
      else if (code === 39) style = style.filter((s) => !/^c\d/.test(s));
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97))
        style = style.filter((s) => !/^c\d/.test(s)).concat("c" + code);
    }
    return style;
  }
  function render(block, event) {
    const pane = block.querySelector("pre.output");
    const state = block.querySelector(".state");
    pane.classList.add("shown");
    const atEnd = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    switch (event.kind) {
      case "phase":
        if (state) state.textContent = event.text + "…";
        if (event.text === "running") pane._style = [];
        break;
      case "build": appendText(pane, event.text, "build"); break;
      case "stdout": appendText(pane, event.text, "stdout"); break;
      case "stderr": appendText(pane, event.text, "stderr"); break;
      case "diagnostic":
        appendText(pane, event.rendered, "diagnostic");
        if (event.line) {
          const line = block.querySelector("pre").querySelectorAll(".line")[event.line - 1];
          if (line) line.classList.add(event.level === "error" ? "error" : "hl");
        }
        break;
      case "dropped":
        appendText(pane, "\n[" + event.bytes + " bytes of output not shown: the page could not keep up]\n", "end");
        break;
      case "exit": {
        const how = event.stopped ? "stopped" : event.code === 0 ? "exited" : "exit code " + (event.code === null ? "(signal)" : event.code);
        appendText(pane, "\n" + how + " after " + event.seconds.toFixed(1) + " s\n", "end");
        if (state) state.textContent = how;
        break;
      }
      case "failed":
        appendText(pane, "\n" + event.message + "\n", "stderr");
        if (state) state.textContent = "failed";
        break;
    }
    if (atEnd) pane.scrollTop = pane.scrollHeight;
  }

  // ---- running blocks
  const runs = new Map();
  function headers() {
    const h = { "content-type": "application/json" };
    if (config.token) h["x-sinew-token"] = config.token;
    return h;
  }
  // The text of an edited block as shown; an unedited block runs the deck's own text.
  function code(block) {
    return block.querySelector("pre").innerText.replace(/\n?$/, "\n");
  }
  async function run(block) {
    stop(block, true);
    const controller = new AbortController();
    runs.set(block, controller);
    const pane = block.querySelector("pre.output");
    pane.textContent = "";
    pane._style = [];
    block.querySelectorAll(".line.error").forEach((l) => l.classList.remove("error"));
    block.querySelector("button.stop").disabled = false;
    const body = { block: block.dataset.block };
    if (block.classList.contains("edited")) body.code = code(block);
    try {
      const response = await fetch("api/run", {
        method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
      });
      if (!response.ok) {
        render(block, { kind: "failed", message: (await response.text()) || response.statusText });
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const message = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          for (const line of message.split("\n"))
            if (line.startsWith("data: ")) render(block, JSON.parse(line.slice(6)));
        }
      }
    } catch (e) {
      if (e.name !== "AbortError") render(block, { kind: "failed", message: String(e) });
    } finally {
      if (runs.get(block) === controller) {
        runs.delete(block);
        block.querySelector("button.stop").disabled = true;
      }
    }
  }
  // Stop asks the server, and the run's own stream then says how it ended. Quietly (a new
  // Run, the page going away) drops the stream instead, which the server takes as Stop.
  function stop(block, quietly) {
    const controller = runs.get(block);
    if (!controller) return;
    block.querySelector("button.stop").disabled = true;
    if (quietly) {
      runs.delete(block);
      controller.abort();
      return;
    }
    block.querySelector(".state").textContent = "stopping…";
    fetch("api/stop", { method: "POST", headers: headers(), body: JSON.stringify({ block: block.dataset.block }) })
      .then((response) => { if (!response.ok) controller.abort(); }, () => controller.abort());
  }
  function leaving(slide) {
    if (!slide) return;
    slide.querySelectorAll(".code[data-stop-on-leave]").forEach((b) => stop(b));
  }
  stage.querySelectorAll(".code").forEach((block) => {
    const runButton = block.querySelector("button.run");
    if (runButton) runButton.addEventListener("click", () => run(block));
    const stopButton = block.querySelector("button.stop");
    if (stopButton) stopButton.addEventListener("click", () => stop(block));
    const pre = block.querySelector("pre");
    if (block.classList.contains("editable")) {
      // An edit is built while the presenter pauses typing, so Run finds it built.
      let pause;
      pre.addEventListener("input", () => {
        block.classList.add("edited");
        clearTimeout(pause);
        pause = setTimeout(() => {
          fetch("api/build", {
            method: "POST", headers: headers(),
            body: JSON.stringify({ block: block.dataset.block, code: code(block) }),
          }).catch(() => {});
        }, 300);
      });
    }
    const captured = config.captured && config.captured[block.dataset.block];
    if (captured) captured.forEach((event) => render(block, event));
  });
  window.addEventListener("pagehide", () => runs.forEach((c, block) => stop(block, true)));

  if (presenter) document.body.classList.add("presenter");
  fit();
  show(parseInt(location.hash.slice(1), 10) || 0);
  window.sinewPresent = { show, run, stop, current: () => current };
})();
