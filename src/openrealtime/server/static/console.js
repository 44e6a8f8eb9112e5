// openrealtime console: talk to this server from the browser over WebRTC.
//
// The flow is the one OpenAI documents for browsers: a client secret minted by the server
// (here POST /console/session), then RTCPeerConnection + microphone + the "oai-events" data
// channel, the SDP offer POSTed to /v1/realtime/calls, and the answer set back. Events on the
// channel are the WebSocket's JSON, GA names. In translation mode the same flow opens
// /v1/realtime/translations/calls: the page shows what was heard and its translation, and
// plays the translated speech. `window.__console` exposes what the page measured, for tests
// and for anyone curious in the developer tools.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("setup"),
    instructions: $("instructions"),
    voice: $("voice"),
    modes: [...document.querySelectorAll('input[name="mode"]')],
    voiceFields: $("voice-fields"),
    translationFields: $("translation-fields"),
    language: $("language"),
    transcriptTitle: $("transcript-title"),
    translation: $("translation"),
    sourceText: $("source-text"),
    targetText: $("target-text"),
    start: $("start"),
    stop: $("stop"),
    status: $("status"),
    statusText: $("status-text"),
    error: $("error"),
    errorTitle: $("error-title"),
    errorMessage: $("error-message"),
    transcript: $("transcript"),
    empty: $("empty"),
    sessionId: $("session-id"),
    micLevel: $("mic-level"),
    remoteLevel: $("remote-level"),
    latencyLast: $("latency-last"),
    latencyMedian: $("latency-median"),
    latencyBest: $("latency-best"),
    latencyTurns: $("latency-turns"),
    log: $("log"),
    logCount: $("log-count"),
    hideDeltas: $("hide-deltas"),
    clearLog: $("clear-log"),
    remoteAudio: $("remote-audio"),
    analysisAudio: $("analysis-audio"),
  };

  const MAX_LOG = 1000;
  const ICE_GATHERING_TIMEOUT_MS = 2000;
  const STORAGE_KEY = "openrealtime.console";
  // Where each mode calls (its hang-up is `${path}/${call_id}/hangup`).
  const CALLS = { voice: "/v1/realtime/calls", translation: "/v1/realtime/translations/calls" };

  // What the page saw, for tests and the curious (read-only by convention).
  const debug = {
    phase: "idle",
    error: null,
    callId: null,
    sessionId: null,
    events: 0, // entries in the event log since Start
    recent: [], // the last events sent and received, whole: {at, direction, event}
    turns: [], // {role, itemId, text, done, latencyMs}
    latencies: [], // ms, one per answered turn
    micLevel: 0,
    micPeak: 0,
    remoteLevel: 0, // RMS of the assistant's audio as the page hears it, 0..1
    remotePeak: 0,
    mode: "voice",
    source: "", // translation mode: the input transcript so far
    target: "", // and its translation
    transcript(role) {
      return this.turns.filter((t) => t.role === role).map((t) => t.text);
    },
  };
  window.__console = debug;

  let call = null; // everything one Start creates; see start()

  // --- state ------------------------------------------------------------------------------

  const PHASE_TEXT = {
    idle: "Ready",
    connecting: "Connecting…",
    live: "Live",
    stopped: "Stopped",
    error: "Error",
  };

  let liveSince = null;

  function setPhase(phase, detail) {
    debug.phase = phase;
    ui.status.dataset.phase = phase;
    ui.statusText.textContent = detail || PHASE_TEXT[phase];
    liveSince = phase === "live" ? performance.now() : null;
    const busy = phase === "connecting" || phase === "live";
    ui.start.hidden = busy;
    ui.stop.hidden = !busy;
    ui.stop.disabled = false;
    ui.instructions.disabled = busy;
    ui.voice.disabled = busy;
    ui.language.disabled = busy;
    for (const radio of ui.modes) radio.disabled = busy;
  }

  function currentMode() {
    const checked = ui.modes.find((radio) => radio.checked);
    return checked ? checked.value : "voice";
  }

  function applyMode() {
    const translating = currentMode() === "translation";
    debug.mode = translating ? "translation" : "voice";
    ui.voiceFields.hidden = translating;
    ui.translationFields.hidden = !translating;
    ui.translation.hidden = !translating;
    ui.transcript.hidden = translating;
    ui.transcriptTitle.textContent = translating ? "Translation" : "Transcript";
    document.body.classList.toggle("translating", translating); // no turns: no turn latency
  }

  function showError(title, message) {
    ui.errorTitle.textContent = title;
    ui.errorMessage.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    debug.error = null;
  }

  class ServerRefused extends Error {}

  async function refusal(response, what) {
    let message = "";
    const body = await response.text().catch(() => "");
    try {
      const parsed = JSON.parse(body);
      message = parsed.error ? parsed.error.message : String(parsed.detail || "");
    } catch {
      message = body.trim().slice(0, 500);
    }
    return new ServerRefused(
      `${what} (HTTP ${response.status}${response.statusText ? " " + response.statusText : ""})` +
        (message ? `: ${message}` : "."),
    );
  }

  function describe(error) {
    if (error instanceof ServerRefused) return error.message;
    switch (error && error.name) {
      case "NotAllowedError":
        return "The browser refused the microphone. Allow it for this page and press Start again.";
      case "NotFoundError":
        return "No microphone was found. Connect one and press Start again.";
      case "NotReadableError":
        return "The microphone is in use by another application or could not be opened.";
      case "TypeError":
        if (/fetch/i.test(error.message)) return "The server cannot be reached: " + error.message;
    }
    return (error && error.message) || String(error);
  }

  // --- start and stop ---------------------------------------------------------------------

  async function start() {
    if (call) return;
    clearError();
    resetConversation();
    const instructions = ui.instructions.value.trim();
    const voice = ui.voice.value;
    const mode = currentMode();
    const language = ui.language.value;
    remember({ instructions: ui.instructions.value, voice, mode, language });
    const asked =
      mode === "translation"
        ? { mode, language }
        : instructions
          ? { instructions, voice }
          : { voice };
    call = {
      pc: null,
      dc: null,
      mic: null,
      audio: null,
      meters: {},
      secret: null,
      ended: false,
      path: CALLS[mode],
    };
    const current = call;
    try {
      if (!navigator.mediaDevices || !window.RTCPeerConnection) {
        throw new Error(
          "This page can use the microphone only over https:// or from localhost. " +
            "Open it at http://localhost:PORT on this machine, or serve it over HTTPS.",
        );
      }
      setPhase("connecting", "Getting a session…");
      const minted = await fetch("/console/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(asked),
      });
      if (!minted.ok) throw await refusal(minted, "The server refused a session");
      current.secret = (await minted.json()).value;
      note("client secret minted");

      setPhase("connecting", "Opening the microphone…");
      current.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      if (current.ended) return stopTracks(current);
      current.audio = new AudioContext();
      await current.audio.resume().catch(() => {});
      current.meters.mic = meter(current.audio, current.mic);

      const pc = (current.pc = new RTCPeerConnection());
      pc.ontrack = (event) => attachRemote(current, event.streams[0] || new MediaStream([event.track]));
      pc.onconnectionstatechange = () => connectionChanged(current);
      for (const track of current.mic.getAudioTracks()) pc.addTrack(track, current.mic);

      const dc = (current.dc = pc.createDataChannel("oai-events"));
      dc.onopen = () => channelOpened(current);
      dc.onmessage = (message) => received(message.data);
      dc.onclose = () => ended(current, "The server closed the event channel.");

      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      setPhase("connecting", "Calling the server…");
      note("SDP offer sent");
      const answer = await fetch(current.path, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${current.secret}` },
        body: pc.localDescription.sdp,
      });
      if (!answer.ok) throw await refusal(answer, "The server refused the call");
      current.callId = callIdFrom(answer.headers.get("Location"));
      debug.callId = current.callId;
      const sdp = await answer.text();
      if (current.ended) {
        hangUp(current); // stopped while the server was answering
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp });
      note(`SDP answer received${current.callId ? " (" + current.callId + ")" : ""}`);
    } catch (error) {
      if (current.ended) return;
      fail(describe(error));
    }
  }

  async function stop() {
    const current = call;
    if (!current) return;
    ui.stop.disabled = true;
    current.ended = true;
    await Promise.race([hangUp(current), sleep(1000)]);
    teardown(current);
    note("stopped");
    setPhase("stopped");
  }

  function hangUp(current) {
    // Best effort: closing the peer connection ends the call in any case.
    if (!current.callId || !current.secret) return Promise.resolve();
    return fetch(`${current.path}/${encodeURIComponent(current.callId)}/hangup`, {
      method: "POST",
      headers: { Authorization: `Bearer ${current.secret}` },
    })
      .then((response) => note(`hangup: HTTP ${response.status}`))
      .catch(() => {});
  }

  function fail(message) {
    const current = call;
    if (current) {
      current.ended = true;
      teardown(current);
    }
    debug.error = message;
    showError("Error", message);
    note(message, "error");
    setPhase("error");
  }

  function ended(current, why) {
    if (current.ended || call !== current) return;
    current.ended = true;
    teardown(current);
    note(why);
    showError("Call ended", why);
    setPhase("stopped");
  }

  function teardown(current) {
    if (current.dc) current.dc.onclose = null;
    if (current.pc) {
      current.pc.onconnectionstatechange = null;
      current.pc.close();
    }
    stopTracks(current);
    if (current.audio) current.audio.close().catch(() => {});
    ui.remoteAudio.srcObject = null;
    ui.analysisAudio.srcObject = null;
    for (const turn of debug.turns) {
      settle(turn);
      badge(turn, "speaking", null);
    }
    if (call === current) call = null;
  }

  function stopTracks(current) {
    if (current.mic) for (const track of current.mic.getTracks()) track.stop();
  }

  function channelOpened(current) {
    if (current.ended) return;
    note("event channel open");
    // Transcription events are off by default; the transcript needs them. (A translation
    // session's secret has them on already.)
    if (current.path === CALLS.voice) send({
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { transcription: { model: "gpt-4o-transcribe" } } },
      },
    });
    setPhase("live");
  }

  function connectionChanged(current) {
    const state = current.pc.connectionState;
    note(`connection ${state}`);
    if (state === "failed") {
      if (!current.ended) fail("The media connection to the server failed (ICE or DTLS).");
    } else if (state === "closed" || state === "disconnected") {
      ended(current, "The connection to the server was lost.");
    }
  }

  function iceGathered(pc) {
    // The offer carries our candidates, so a server that does not trickle can reach us.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== "complete") return;
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    });
  }

  function callIdFrom(location) {
    if (!location) return null;
    const last = location.split("?")[0].replace(/\/+$/, "").split("/").pop();
    return last ? decodeURIComponent(last) : null;
  }

  function send(event) {
    if (!call || !call.dc || call.dc.readyState !== "open") return;
    call.dc.send(JSON.stringify(event));
    logEvent("out", event);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- audio ------------------------------------------------------------------------------

  function attachRemote(current, stream) {
    if (current.ended) return;
    ui.remoteAudio.srcObject = stream;
    ui.analysisAudio.srcObject = stream;
    ui.remoteAudio.play().catch(() => {});
    ui.analysisAudio.play().catch(() => {});
    current.meters.remote = meter(current.audio, stream);
    note("assistant audio track");
  }

  function meter(context, stream) {
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    return () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      return Math.sqrt(sum / samples.length);
    };
  }

  function toWidth(rms) {
    // -60 dBFS .. 0 dBFS across the bar.
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    return Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
  }

  setInterval(() => {
    const meters = call ? call.meters : {};
    const mic = meters.mic ? meters.mic() : 0;
    const remote = meters.remote ? meters.remote() : 0;
    debug.micLevel = mic;
    debug.remoteLevel = remote;
    debug.micPeak = Math.max(debug.micPeak, mic);
    debug.remotePeak = Math.max(debug.remotePeak, remote);
    ui.micLevel.style.width = toWidth(mic) + "%";
    ui.remoteLevel.style.width = toWidth(remote) + "%";
    if (liveSince !== null) {
      const seconds = Math.floor((performance.now() - liveSince) / 1000);
      ui.statusText.textContent = `Live · ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    }
  }, 50);

  // --- server events ----------------------------------------------------------------------

  let speechStoppedAt = null; // performance.now() of the last end of user speech
  const responseItems = new Map(); // response_id -> first output item id
  const latencyByResponse = new Map(); // response_id -> ms, until its bubble exists
  const turnsById = new Map(); // item_id -> turn

  function received(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      note("unreadable event: " + String(data).slice(0, 200), "error");
      return;
    }
    logEvent("in", event);
    handle(event);
  }

  function handle(event) {
    switch (event.type) {
      case "session.created":
      case "session.updated":
        if (event.session && event.session.id) {
          debug.sessionId = event.session.id;
          ui.sessionId.textContent = event.session.id;
        }
        break;
      case "input_audio_buffer.speech_started":
        speechStoppedAt = null;
        turnFor("user", event.item_id);
        break;
      case "input_audio_buffer.speech_stopped":
        speechStoppedAt = performance.now();
        turnFor("user", event.item_id);
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const turn = turnFor("user", event.item_id);
        setText(turn, turn.text + (event.delta || ""));
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const turn = turnFor("user", event.item_id);
        setText(turn, event.transcript || "");
        settle(turn, event.transcript ? null : "no words recognized");
        break;
      }
      case "conversation.item.input_audio_transcription.failed": {
        const turn = turnFor("user", event.item_id);
        settle(turn, "transcription failed" + (event.error ? ": " + event.error.message : ""));
        break;
      }
      case "response.output_item.added":
        if (event.item && !responseItems.has(event.response_id)) {
          responseItems.set(event.response_id, event.item.id);
        }
        if (event.item && event.item.type === "message" && event.item.role === "assistant") {
          assistantTurn(event.item.id, event.response_id);
        }
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta": {
        const turn = assistantTurn(event.item_id, event.response_id);
        setText(turn, turn.text + (event.delta || ""));
        break;
      }
      case "response.output_audio_transcript.done":
      case "response.output_text.done": {
        const turn = assistantTurn(event.item_id, event.response_id);
        const text = event.transcript !== undefined ? event.transcript : event.text;
        if (text) setText(turn, text);
        break;
      }
      case "response.done": {
        const response = event.response || {};
        const item = responseItems.get(response.id);
        if (item && turnsById.has(item)) settle(turnsById.get(item));
        if (response.status === "failed") {
          const details = response.status_details || {};
          const message = (details.error && details.error.message) || "no reason given";
          showError("The answer failed", message);
        }
        break;
      }
      case "output_audio_buffer.started": {
        if (speechStoppedAt !== null) {
          const ms = Math.round(performance.now() - speechStoppedAt);
          speechStoppedAt = null;
          recordLatency(ms, event.response_id);
        }
        const item = responseItems.get(event.response_id);
        if (item && turnsById.has(item)) badge(turnsById.get(item), "speaking", "speaking");
        break;
      }
      case "output_audio_buffer.stopped": {
        const item = responseItems.get(event.response_id);
        if (item && turnsById.has(item)) badge(turnsById.get(item), "speaking", null);
        break;
      }
      case "output_audio_buffer.cleared":
      case "conversation.item.truncated": {
        const id = event.item_id || responseItems.get(event.response_id);
        const turn = id && turnsById.get(id);
        if (turn) {
          badge(turn, "speaking", null);
          badge(turn, "cut", "interrupted");
        }
        break;
      }
      // Translation sessions: the source transcript and its translation, each in its pane.
      case "session.input_transcript.delta":
        debug.source += event.delta || "";
        appendPane(ui.sourceText, debug.source);
        break;
      case "session.output_transcript.delta":
        debug.target += event.delta || "";
        appendPane(ui.targetText, debug.target);
        break;
      case "error":
        showError("The server reported an error", (event.error && event.error.message) || "unknown error");
        break;
    }
  }

  // --- transcript -------------------------------------------------------------------------

  function appendPane(pane, text) {
    const stick = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
    pane.textContent = text;
    if (stick) pane.scrollTop = pane.scrollHeight;
  }

  function resetConversation() {
    for (const node of [...ui.transcript.querySelectorAll(".turn")]) node.remove();
    debug.source = "";
    debug.target = "";
    ui.sourceText.textContent = "";
    ui.targetText.textContent = "";
    ui.empty.hidden = false;
    debug.turns = [];
    debug.latencies = [];
    debug.events = 0;
    debug.recent = [];
    debug.micPeak = 0;
    debug.remotePeak = 0;
    debug.callId = null;
    debug.sessionId = null;
    ui.sessionId.textContent = "";
    speechStoppedAt = null;
    responseItems.clear();
    latencyByResponse.clear();
    turnsById.clear();
    ui.log.replaceChildren();
    ui.logCount.textContent = "0";
    showLatency();
  }

  function turnFor(role, itemId) {
    const key = itemId || `${role}-${debug.turns.length}`;
    let turn = turnsById.get(key);
    if (turn) return turn;
    turn = { role, itemId: key, text: "", done: false, latencyMs: null, badges: {} };
    const node = document.createElement("div");
    node.className = `turn ${role} pending`;
    const who = document.createElement("div");
    who.className = "who";
    const name = document.createElement("span");
    name.textContent = role === "user" ? "You" : "Assistant";
    who.append(name);
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    node.append(who, bubble);
    turn.node = node;
    turn.who = who;
    turn.bubble = bubble;
    Object.defineProperty(turn, "node", { enumerable: false });
    Object.defineProperty(turn, "who", { enumerable: false });
    Object.defineProperty(turn, "bubble", { enumerable: false });
    turnsById.set(key, turn);
    debug.turns.push(turn);
    ui.empty.hidden = true;
    const stick = nearBottom();
    ui.transcript.append(node);
    if (stick) scrollDown();
    return turn;
  }

  function assistantTurn(itemId, responseId) {
    const turn = turnFor("assistant", itemId);
    if (responseId && latencyByResponse.has(responseId) && turn.latencyMs === null) {
      turn.latencyMs = latencyByResponse.get(responseId);
      latencyByResponse.delete(responseId);
      badge(turn, "latency", `${turn.latencyMs} ms`);
    }
    return turn;
  }

  function setText(turn, text) {
    const stick = nearBottom();
    turn.text = text;
    turn.bubble.textContent = text;
    if (stick) scrollDown();
  }

  function settle(turn, noteText) {
    if (turn.done) return;
    turn.done = true;
    turn.node.classList.remove("pending");
    if (noteText && !turn.text) {
      const span = document.createElement("span");
      span.className = "note";
      span.textContent = noteText;
      turn.bubble.replaceChildren(span);
    }
  }

  function badge(turn, kind, text) {
    const existing = turn.badges[kind];
    if (!text) {
      if (existing) existing.remove();
      delete turn.badges[kind];
      return;
    }
    const span = existing || document.createElement("span");
    span.className = `badge ${kind === "latency" ? "" : kind}`.trim();
    span.textContent = text;
    if (kind === "latency") span.title = "end of your speech → first assistant audio";
    if (!existing) turn.who.append(span);
    turn.badges[kind] = span;
  }

  function nearBottom() {
    const t = ui.transcript;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 80;
  }

  function scrollDown() {
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }

  // --- latency ----------------------------------------------------------------------------

  function recordLatency(ms, responseId) {
    debug.latencies.push(ms);
    const item = responseItems.get(responseId);
    const turn = item && turnsById.get(item);
    if (turn && turn.latencyMs === null) {
      turn.latencyMs = ms;
      badge(turn, "latency", `${ms} ms`);
    } else if (responseId) {
      latencyByResponse.set(responseId, ms);
    }
    showLatency();
  }

  function showLatency() {
    const all = debug.latencies;
    ui.latencyTurns.textContent = String(all.length);
    if (!all.length) {
      ui.latencyLast.textContent = "—";
      ui.latencyLast.classList.add("none");
      ui.latencyMedian.textContent = "—";
      ui.latencyBest.textContent = "—";
      return;
    }
    const sorted = [...all].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : Math.round((sorted[mid - 1] + sorted[mid]) / 2);
    ui.latencyLast.textContent = String(all[all.length - 1]);
    ui.latencyLast.classList.remove("none");
    ui.latencyMedian.textContent = `${median} ms`;
    ui.latencyBest.textContent = `${sorted[0]} ms`;
  }

  // --- event log --------------------------------------------------------------------------

  function timestamp() {
    const now = new Date();
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}`;
  }

  function logEntry(direction, label, body, classes) {
    const stick = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    const li = document.createElement("li");
    li.className = [direction, ...classes].join(" ");
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const time = document.createElement("time");
    time.textContent = timestamp();
    const dir = document.createElement("span");
    dir.className = "dir";
    dir.textContent = { in: "↓", out: "↑", note: "•" }[direction];
    dir.title = { in: "from the server", out: "to the server", note: "in this page" }[direction];
    const type = document.createElement("span");
    type.className = "type";
    if (direction === "note") {
      type.textContent = label;
    } else {
      // Long event names break after their dots, not mid-word.
      label.split(".").forEach((part, i, parts) => {
        type.append(part + (i < parts.length - 1 ? "." : ""));
        if (i < parts.length - 1) type.append(document.createElement("wbr"));
      });
    }
    summary.append(time, dir, type);
    details.append(summary);
    if (body) {
      // Built only when opened: audio-free, but some events are long.
      details.addEventListener(
        "toggle",
        () => {
          if (details.open && !details.querySelector("pre")) {
            const pre = document.createElement("pre");
            pre.textContent = JSON.stringify(body, null, 2);
            details.append(pre);
          }
        },
        { once: false },
      );
    }
    li.append(details);
    ui.log.append(li);
    while (ui.log.childElementCount > MAX_LOG) ui.log.firstElementChild.remove();
    debug.events += 1;
    ui.logCount.textContent = String(debug.events);
    if (stick) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function logEvent(direction, event) {
    debug.recent.push({ at: Math.round(performance.now()), direction, event });
    if (debug.recent.length > 200) debug.recent.shift();
    const type = String(event.type || "(no type)");
    const classes = [];
    if (/\.delta$/.test(type) || type === "input_audio_buffer.append") classes.push("delta");
    if (type === "error") classes.push("error");
    logEntry(direction, type, event, classes);
  }

  function note(text, kind) {
    logEntry("note", text, null, kind === "error" ? ["error", "note"] : ["note"]);
  }

  // --- wiring -----------------------------------------------------------------------------

  function remember(values) {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(values));
    } catch {
      /* private mode: nothing to keep */
    }
  }

  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && typeof saved.instructions === "string" && saved.instructions.trim()) {
      ui.instructions.value = saved.instructions;
    }
    if (saved && [...ui.voice.options].some((o) => o.value === saved.voice)) ui.voice.value = saved.voice;
    if (saved && [...ui.language.options].some((o) => o.value === saved.language)) {
      ui.language.value = saved.language;
    }
    const savedMode = saved && ui.modes.find((radio) => radio.value === saved.mode);
    if (savedMode) savedMode.checked = true;
  } catch {
    /* nothing saved */
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  ui.stop.addEventListener("click", stop);
  for (const radio of ui.modes) radio.addEventListener("change", applyMode);
  $("error-dismiss").addEventListener("click", () => {
    ui.error.hidden = true;
  });
  ui.hideDeltas.addEventListener("change", () => ui.log.classList.toggle("hide-deltas", ui.hideDeltas.checked));
  ui.clearLog.addEventListener("click", () => {
    ui.log.replaceChildren();
  });
  window.addEventListener("pagehide", () => {
    if (call) teardown(call);
  });

  // For tests and demos: feed an event as if it came from the server.
  debug.inject = (event) => received(JSON.stringify(event));
  applyMode();
  setPhase("idle");
})();
