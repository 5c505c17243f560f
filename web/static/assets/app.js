// The redemption page: check a code, show the offer, redeem, show the status; ask for a lost
// code. It talks only to the public REST API on this origin, with POST bodies so the code
// never appears in a URL, and keeps no state beyond the open page (no cookies, no storage).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const sections = ["enter", "offer", "done", "status", "lost"];

  // What the person is working with: the normalised code and the CheckCode answer.
  let current = null;

  const exposedLabels = {
    EXPOSED_DATA_NAME: "your full name",
    EXPOSED_DATA_SSN: "your Social Security number",
    EXPOSED_DATA_DRIVERS_LICENSE: "your driver's license number",
    EXPOSED_DATA_GOVERNMENT_ID: "another government identity number",
    EXPOSED_DATA_DATE_OF_BIRTH: "your date of birth",
    EXPOSED_DATA_ADDRESS: "your postal address",
    EXPOSED_DATA_PHONE_NUMBER: "your phone number",
    EXPOSED_DATA_ACCOUNT_PIN: "your account PIN",
    EXPOSED_DATA_EMAIL: "your email address",
  };

  const enrollmentLabels = {
    ENROLLMENT_STATE_PENDING: "Redeemed: waiting for you to finish enrollment with the partner",
    ENROLLMENT_STATE_ACTIVE: "Active: you are protected",
    ENROLLMENT_STATE_EXPIRED: "Ended: the protection period is over",
    ENROLLMENT_STATE_CANCELLED: "Cancelled",
    ENROLLMENT_STATE_LAPSED: "Lapsed: enrollment was not finished with the partner in time",
  };

  const codeLabels = {
    CODE_STATE_ISSUED: "Not redeemed yet",
    CODE_STATE_REDEEMED: "Redeemed",
    CODE_STATE_EXPIRED: "Expired: the redeem-by date has passed",
    CODE_STATE_REVOKED: "No longer valid",
  };

  // show makes one step visible and moves focus to its heading, so screen readers announce
  // the new step and keyboard users continue from there.
  function show(id) {
    for (const s of sections) {
      $(s).hidden = s !== id;
    }
    announce("");
    $(id + "-title").focus();
  }

  function announce(message) {
    const el = $("announce");
    el.textContent = message;
    el.hidden = !message;
  }

  function fieldError(input, el, message) {
    el.textContent = message || "";
    el.hidden = !message;
    if (message) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
  }

  function note(el, message) {
    el.textContent = message || "";
    el.hidden = !message;
  }

  function busy(button, on, text) {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = text;
    } else if (button.dataset.label) {
      button.textContent = button.dataset.label;
    }
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  function waitText(retryAfter) {
    const s = parseInt(retryAfter, 10);
    if (!(s > 0)) return "a few minutes";
    if (s < 60) return s === 1 ? "1 second" : s + " seconds";
    if (s < 3600) {
      const m = Math.ceil(s / 60);
      return m === 1 ? "1 minute" : m + " minutes";
    }
    const h = Math.floor(s / 3600);
    const m = Math.ceil((s % 3600) / 60);
    const hours = h === 1 ? "1 hour" : h + " hours";
    return m ? hours + " and " + (m === 1 ? "1 minute" : m + " minutes") : hours;
  }

  // call posts to the public redemption API and turns every failure into a sentence.
  async function call(method, body) {
    let resp;
    try {
      resp = await fetch("/v1/redemption:" + method, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (e) {
      return { ok: false, status: 0, message: "We could not reach the service. Check your internet connection and try again." };
    }
    let data = {};
    try {
      data = await resp.json();
    } catch (e) {
      data = {};
    }
    if (resp.ok) {
      return { ok: true, status: resp.status, data };
    }
    let message = typeof data.message === "string" ? data.message : "";
    if (resp.status === 429) {
      message = "Too many attempts. For your protection, please wait " +
        waitText(resp.headers.get("Retry-After")) + " and try again.";
    } else if (resp.status >= 500 || !message) {
      message = "Something went wrong on our side. Please try again in a few minutes." +
        (message ? " (" + message + ")" : "");
    }
    return { ok: false, status: resp.status, message };
  }

  function formatTime(s) {
    if (!s) return "";
    const d = new Date(s);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
  }

  function requestId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // safeLink only accepts web addresses: the partner URI comes from configuration, and a
  // javascript: URL must never become a link.
  function safeLink(a, uri) {
    try {
      const u = new URL(uri);
      if (u.protocol === "https:" || u.protocol === "http:") {
        a.href = u.href;
        return true;
      }
    } catch (e) {
      // not a URL
    }
    a.removeAttribute("href");
    return false;
  }

  function el(tag, text) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // sentence ends text with a full stop unless it has one ("Demo Co." must not become "Co..").
  function sentence(s) {
    return /[.!?]$/.test(s) ? s : s + ".";
  }

  function partnerName() {
    return (current && current.check && current.check.partner_display_name) || "the partner";
  }

  // ---- Step 1: the code ----

  const codeInput = $("code");
  const codeError = $("code-error");

  function parseMessage(p) {
    switch (p.error) {
      case "character":
        return "Check the code: \u201c" + p.character + "\u201d cannot be part of a code. Codes use only digits and the letters A to Z except U.";
      case "length":
        return p.count > 16
          ? "Check the code: it has 16 letters and digits, and you typed more."
          : "Check the code: it has 16 letters and digits, and you typed " + p.count + ".";
      default:
        return "Check the code: one character looks mistyped, or two neighbours are swapped. Compare it with your letter.";
    }
  }

  // As soon as a whole code is typed, say whether it checks out; before that, only clear an
  // earlier message once the input is fixed.
  codeInput.addEventListener("input", () => {
    const p = EnrollCode.parse(codeInput.value);
    if (EnrollCode.symbolCount(codeInput.value) >= 16 || p.error === "character") {
      fieldError(codeInput, codeError, p.ok ? "" : parseMessage(p));
    } else if (!codeError.hidden && p.error === "length") {
      fieldError(codeInput, codeError, "");
    }
  });

  function codeProblem(r) {
    if (r.status === 400 || r.status === 404) {
      const msg = r.status === 404
        ? "We could not find this code. Check it against your letter. If it still does not work, ask for a new letter."
        : r.message.replace(/^check the code/i, "Check the code");
      fieldError(codeInput, codeError, msg);
      show("enter");
      codeInput.focus();
      return;
    }
    show("enter");
    announce(r.message);
  }

  $("code-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const p = EnrollCode.parse(codeInput.value);
    if (!p.ok) {
      fieldError(codeInput, codeError, parseMessage(p));
      codeInput.focus();
      return;
    }
    fieldError(codeInput, codeError, "");
    const button = $("check-button");
    busy(button, true, "Checking\u2026");
    const r = await call("check", { code: p.code });
    busy(button, false);
    if (!r.ok) {
      codeProblem(r);
      return;
    }
    current = { code: p.code, check: r.data };
    if (r.data.state === "CODE_STATE_ISSUED") {
      renderOffer();
      show("offer");
    } else {
      await showStatus();
    }
  });

  // ---- Step 2: the offer ----

  function renderOffer() {
    const c = current.check;
    $("offer-incident").textContent = (c.incident_title ? c.incident_title + ": y" : "Y") +
      "our personal data was exposed, and you are offered identity protection free of charge.";
    $("offer-code").textContent = current.code;
    const months = c.coverage_months || 24;
    $("offer-coverage").textContent = months + " months, free of charge. It starts when " +
      partnerName() + " has confirmed your enrollment.";
    $("offer-partner").textContent = partnerName();
    $("offer-redeem-by").textContent = formatTime(c.redeem_by_time);
    const box = $("offer-cohorts");
    box.replaceChildren();
    for (const cohort of c.cohorts || []) {
      const sec = el("section");
      sec.className = "cohort";
      sec.appendChild(el("h2", cohort.display_name || "Affected customers"));
      const exposed = (cohort.exposed_data || []).map((x) => exposedLabels[x]).filter(Boolean);
      if (exposed.length) {
        sec.appendChild(el("p", "What was exposed: " + exposed.join(", ") + "."));
      }
      const actions = cohort.recommended_actions || [];
      if (actions.length) {
        sec.appendChild(el("h3", "What we recommend you do"));
        const ol = el("ol");
        for (const a of actions) ol.appendChild(el("li", a));
        sec.appendChild(ol);
      }
      box.appendChild(sec);
    }
    note($("redeem-error"), "");
  }

  $("redeem-button").addEventListener("click", async () => {
    const button = $("redeem-button");
    busy(button, true, "Redeeming\u2026");
    const r = await call("redeem", { code: current.code, request_id: requestId() });
    busy(button, false);
    if (r.ok) {
      renderDone(r.data);
      show("done");
      return;
    }
    if (r.status === 409) {
      // Redeemed meanwhile, perhaps in another tab: show what exists.
      await showStatus();
      return;
    }
    if (r.status === 400 || r.status === 404) {
      note($("redeem-error"), r.message);
      return;
    }
    announce(r.message);
  });

  function backToEnter(clear) {
    current = null;
    if (clear) codeInput.value = "";
    fieldError(codeInput, codeError, "");
    show("enter");
    codeInput.focus();
  }

  $("offer-back").addEventListener("click", () => backToEnter(true));
  $("status-back").addEventListener("click", () => backToEnter(true));

  // ---- Step 3: redeemed ----

  function renderDone(data) {
    const e = data.enrollment || {};
    for (const n of document.querySelectorAll(".partner-name")) n.textContent = partnerName();
    $("done-state").textContent = enrollmentLabels[e.state] || "Redeemed";
    $("done-deadline").textContent = formatTime(e.activation_deadline_time);
    const a = $("done-next");
    a.textContent = "Continue to " + partnerName();
    a.hidden = !safeLink(a, data.next_step_uri);
  }

  // ---- Status of a code already used ----

  async function showStatus() {
    const r = await call("status", { code: current.code });
    if (!r.ok) {
      codeProblem(r);
      return;
    }
    const d = r.data;
    const e = d.enrollment;
    let summary;
    switch (e ? e.state : d.code_state) {
      case "ENROLLMENT_STATE_PENDING":
        summary = sentence("This code has already been redeemed. Your enrollment is waiting for you to finish with " + partnerName());
        break;
      case "ENROLLMENT_STATE_ACTIVE":
        summary = "This code has already been redeemed, and your identity protection is active.";
        break;
      case "ENROLLMENT_STATE_EXPIRED":
        summary = "This code was redeemed, and the protection period has ended.";
        break;
      case "ENROLLMENT_STATE_CANCELLED":
        summary = "This code was redeemed, and the enrollment was cancelled.";
        break;
      case "ENROLLMENT_STATE_LAPSED":
        summary = "This code was redeemed, but enrollment was not finished with the partner in time.";
        break;
      case "CODE_STATE_EXPIRED":
        summary = "This code can no longer be redeemed: its redeem-by date has passed.";
        break;
      case "CODE_STATE_REVOKED":
        summary = "This code is no longer valid. If you received a newer letter, use the code from that letter.";
        break;
      default:
        summary = "This code has not been redeemed yet.";
    }
    $("status-summary").textContent = summary;
    const facts = $("status-facts");
    facts.replaceChildren();
    const fact = (term, value) => {
      if (!value) return;
      facts.appendChild(el("dt", term));
      facts.appendChild(el("dd", value));
    };
    fact("Your code", current.code);
    fact("Code status", codeLabels[d.code_state]);
    if (e) {
      fact("Enrollment status", enrollmentLabels[e.state]);
      fact("Redeemed on", formatTime(e.redeem_time));
      if (e.state === "ENROLLMENT_STATE_PENDING") fact("Finish enrollment by", formatTime(e.activation_deadline_time));
      fact("Protection started", formatTime(e.activate_time));
      fact("Protected until", formatTime(e.coverage_end_time));
      fact("Cancelled on", formatTime(e.cancel_time));
    }
    const a = $("status-next");
    const live = e && (e.state === "ENROLLMENT_STATE_PENDING" || e.state === "ENROLLMENT_STATE_ACTIVE");
    a.textContent = (e && e.state === "ENROLLMENT_STATE_ACTIVE" ? "Manage your protection with " : "Continue to ") + partnerName();
    $("status-next-wrap").hidden = !(live && safeLink(a, d.next_step_uri));
    show("status");
  }

  // ---- Lost code ----

  $("lost-link").addEventListener("click", () => {
    $("lost-answer").hidden = true;
    show("lost");
  });
  $("lost-back").addEventListener("click", () => backToEnter(false));

  $("lost-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const last = $("lost-last-name");
    const lastError = $("lost-last-name-error");
    const generalError = $("lost-error");
    fieldError(last, lastError, "");
    generalError.hidden = true;
    $("lost-answer").hidden = true;
    if (!last.value.trim()) {
      fieldError(last, lastError, "Enter your last name.");
      last.focus();
      return;
    }
    const body = {
      last_name: last.value.trim(),
      date_of_birth: $("lost-dob").value.trim(),
      ssn: $("lost-ssn").value.trim(),
      phone: $("lost-phone").value.trim(),
      postal_code: $("lost-zip").value.trim(),
      request_id: requestId(),
    };
    const button = $("lost-button");
    busy(button, true, "Sending\u2026");
    const r = await call("resend", body);
    busy(button, false);
    if (!r.ok) {
      note(generalError, r.message);
      return;
    }
    // The details are not needed any more; do not leave them on the screen.
    $("lost-form").reset();
    const answer = $("lost-answer");
    answer.textContent = r.data.message;
    answer.hidden = false;
    answer.setAttribute("tabindex", "-1");
    answer.focus();
  });
})();
