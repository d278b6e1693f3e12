// Sekimori console: passkeys (WebAuthn). The browser and its authenticator make and
// hold the operator's private key; this script only passes public keys and signatures.
//
// Registration: <button id="passkey-register" data-options="URL" data-url="URL"> with
// <input id="passkey-label">: asks the server for creation options, calls
// navigator.credentials.create and posts the attestation back.
// Signing: <button data-sign data-challenge="b64url digest" data-credentials="id,id"
// data-url="URL" data-status="ID">: navigator.credentials.get with the digest as the
// challenge, user verification required; posts the assertion's parts.
// Answers are JSON: {"redirect": URL} or {"error": "message"} (shown in the status).
(function () {
  "use strict";

  function fromB64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (e) {
      return "";
    }
  }

  function post(url, fields) {
    var body = new URLSearchParams();
    Object.keys(fields).forEach(function (k) { body.append(k, fields[k]); });
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" },
      body: body
    }).then(function (response) {
      return response.json().catch(function () {
        return { error: "HTTP " + response.status };
      });
    });
  }

  function show(status, text, state) {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state;
    status.hidden = false;
  }

  function finish(status, answer) {
    if (answer.redirect) {
      show(status, answer.message || "", "done");
      window.location.assign(answer.redirect);
    } else {
      show(status, answer.error || "?", "error");
    }
  }

  function failed(status, button, error) {
    // NotAllowedError: the person cancelled, or no authenticator answered.
    show(status, (status && status.dataset.failed ? status.dataset.failed + " " : "") +
      (error && error.name ? error.name + ": " + error.message : String(error)), "error");
    if (button) button.disabled = false;
  }

  function register(button) {
    var status = document.getElementById("passkey-status");
    var label = document.getElementById("passkey-label");
    if (!window.PublicKeyCredential) {
      show(status, status ? status.dataset.unsupported : "", "error");
      return;
    }
    button.disabled = true;
    show(status, status ? status.dataset.working : "", "working");
    post(button.dataset.options, {}).then(function (options) {
      if (options.error) throw new Error(options.error);
      options.challenge = fromB64url(options.challenge);
      options.user.id = fromB64url(options.user.id);
      (options.excludeCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
      return navigator.credentials.create({ publicKey: options });
    }).then(function (credential) {
      var response = credential.response;
      var transports = response.getTransports ? response.getTransports() : [];
      var payload = {
        id: credential.id,
        rawId: toB64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toB64url(response.clientDataJSON),
          attestationObject: toB64url(response.attestationObject),
          transports: transports
        },
        clientExtensionResults: credential.getClientExtensionResults(),
        authenticatorAttachment: credential.authenticatorAttachment || undefined
      };
      return post(button.dataset.url, {
        credential: JSON.stringify(payload),
        label: label ? label.value : ""
      });
    }).then(function (answer) {
      finish(status, answer);
      if (!answer.redirect) button.disabled = false;
    }).catch(function (error) { failed(status, button, error); });
  }

  function sign(button) {
    var status = document.getElementById(button.dataset.status || "sign-status");
    if (!window.PublicKeyCredential) {
      show(status, status ? status.dataset.unsupported : "", "error");
      return;
    }
    button.disabled = true;
    show(status, status ? status.dataset.working : "", "working");
    var allow = (button.dataset.credentials || "").split(",").filter(Boolean).map(function (id) {
      return { type: "public-key", id: fromB64url(id) };
    });
    navigator.credentials.get({
      publicKey: {
        challenge: fromB64url(button.dataset.challenge),
        rpId: button.dataset.rpId || undefined,
        allowCredentials: allow,
        userVerification: "required",
        timeout: 120000
      }
    }).then(function (assertion) {
      var r = assertion.response;
      return post(button.dataset.url, {
        credential_id: toB64url(assertion.rawId),
        authenticator_data: toB64url(r.authenticatorData),
        client_data_json: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature)
      });
    }).then(function (answer) {
      finish(status, answer);
      if (!answer.redirect) button.disabled = false;
    }).catch(function (error) { failed(status, button, error); });
  }

  function bind(root) {
    var registerButton = root.querySelector ? root.querySelector("#passkey-register") : null;
    if (registerButton && !registerButton.dataset.bound) {
      registerButton.dataset.bound = "1";
      registerButton.addEventListener("click", function () { register(registerButton); });
    }
    root.querySelectorAll("button[data-sign]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () { sign(button); });
    });
    // The action form: show only the parameters of the chosen action type.
    root.querySelectorAll("select[data-action-type]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      var update = function () {
        document.querySelectorAll("[data-params-for]").forEach(function (fieldset) {
          var on = fieldset.dataset.paramsFor.split(" ").indexOf(select.value) >= 0;
          fieldset.hidden = !on;
          fieldset.disabled = !on;
        });
      };
      select.addEventListener("change", update);
      update();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { bind(document); });
  document.addEventListener("htmx:afterSettle", function (e) { bind(e.target); });
})();
