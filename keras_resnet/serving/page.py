"""The web page at ``GET /``: choose or drop an image, see what a served classifier says.

Everything is in the one HTML document the server answers (no external script, stylesheet,
font or image; its Content-Security-Policy allows nothing else): a model selector, a file
picker and drop zone, and each model's card (:mod:`keras_resnet.serving.card`). The page's
script sends the file the way any REST client does, base64 in TensorFlow Serving's JSON, to the
model's own ``POST /v1/models/NAME/versions/N:predict`` with the ``serving_bytes`` signature,
and shows the top 5 classes of a single-label classifier or every label at or over its
threshold of a multi-label one; then, where the export has the ``grad_cam`` signature, the
Grad-CAM overlay of the top class (a second ``:predict`` with ``"signature_name":
"grad_cam"``). An error is the API's own ``{"error": ...}`` line. A segmentation model or a
detector gets a plain note: the page shows classifiers.

Example:
    >>> html, policy = render_page([model_card(servable, "exports")])  # doctest: +SKIP
"""

import base64
import hashlib
import html
import json
from urllib.parse import quote

from keras_resnet.serving.card import CLASSIFIER_KINDS, KIND_TITLES

_STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2430; background: #f6f7f9; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.4rem; margin: 0.5rem 0; }
header p { margin: 0 0 1rem; color: #4a5568; }
main { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.left { flex: 3 1 26rem; min-width: 0; }
aside { flex: 2 1 18rem; min-width: 0; }
.drop { border: 2px dashed #8a9ab0; border-radius: 0.6rem; padding: 1.6rem; text-align: center;
        background: #fff; margin: 0.8rem 0; }
.drop.over { border-color: #2b6cb0; background: #ebf4ff; }
.drop.disabled { opacity: 0.5; }
.error { color: #9b1c1c; background: #fde8e8; padding: 0.5rem 0.8rem; border-radius: 0.4rem; }
.notice { background: #fefcbf; padding: 0.5rem 0.8rem; border-radius: 0.4rem; }
#status { color: #4a5568; min-height: 1.2em; }
.images { display: flex; gap: 1rem; flex-wrap: wrap; }
figure { margin: 0; }
figure img { width: 14rem; height: auto; image-rendering: pixelated; border-radius: 0.3rem; }
figcaption { font-size: 0.85rem; color: #4a5568; }
table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
td, th { padding: 0.3rem 0.5rem; text-align: left; border-bottom: 1px solid #e2e8f0; }
td.probability { font-variant-numeric: tabular-nums; width: 6rem; }
td.bar { width: 40%; }
td.bar span { display: block; height: 0.7rem; background: #3182ce; border-radius: 0.2rem; }
.card { background: #fff; border-radius: 0.6rem; padding: 0.8rem 1rem; border: 1px solid #e2e8f0; }
.card h2 { font-size: 1.1rem; margin: 0 0 0.5rem; }
.card h3 { font-size: 0.95rem; margin: 0.8rem 0 0.3rem; }
dl { display: grid; grid-template-columns: minmax(6rem, auto) minmax(10rem, 1fr);
     gap: 0.2rem 0.8rem; margin: 0; font-size: 0.9rem; }
dt { color: #4a5568; } dd { margin: 0; overflow-wrap: anywhere; }
select { font-size: 1rem; padding: 0.2rem; }
"""

_SCRIPT = r"""
"use strict";
const models = JSON.parse(document.getElementById("models").textContent);
const $ = (id) => document.getElementById(id);
let current = 0;
let ticket = 0;

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text;
}

function clearResult() {
  $("result").hidden = true;
  $("error").hidden = true;
  $("overlay-figure").hidden = true;
  $("overlay").removeAttribute("src");
  $("classes").replaceChildren();
  $("summary").textContent = "";
}

function select(index) {
  current = index;
  ticket += 1;
  document.querySelectorAll(".card").forEach((card, i) => { card.hidden = i !== index; });
  const model = models[index];
  const classifier = model.classifier;
  $("notice").hidden = classifier;
  $("notice").textContent = model.notice;
  $("file").disabled = !classifier;
  $("drop").classList.toggle("disabled", !classifier);
  clearResult();
  setState("ready", "");
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error", "");
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = reader.result;
      resolve({url, b64: url.slice(url.indexOf(",") + 1)});
    };
    reader.onerror = () => reject(new Error(`The file could not be read: ${reader.error}`));
    reader.readAsDataURL(file);
  });
}

async function call(model, signature, b64) {
  let response;
  try {
    response = await fetch(model.url, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({signature_name: signature, instances: [{b64}]}),
    });
  } catch (error) {
    throw new Error(`The request failed before the server answered (${error.message}).`);
  }
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok || body === null) {
    throw new Error(body && body.error ? body.error : `The server answered ${response.status}.`);
  }
  return body.predictions[0];
}

function addRow(label, probability, note) {
  const row = document.createElement("tr");
  row.dataset.label = label;
  row.dataset.probability = String(probability);
  const name = document.createElement("td");
  name.className = "label";
  name.textContent = note ? `${label} ${note}` : label;
  const value = document.createElement("td");
  value.className = "probability";
  value.textContent = probability.toFixed(4);
  const bar = document.createElement("td");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
  bar.append(fill);
  row.append(name, value, bar);
  $("classes").append(row);
}

function showClasses(model, answer) {
  if (model.kind === "multilabel") {
    const order = answer.probabilities.map((p, i) => i).sort(
      (a, b) => answer.probabilities[b] - answer.probabilities[a]);
    const over = order.filter((i) => answer.predicted[i] === 1);
    over.forEach((i) => addRow(model.class_names[i], answer.probabilities[i],
                               model.thresholds ? `(threshold ${model.thresholds[i]})` : ""));
    const top = order[0];
    $("summary").textContent = over.length ? `${over.length} label(s) at or over their threshold.`
      : `No label reaches its threshold; the highest is ${model.class_names[top]} ` +
        `(${answer.probabilities[top].toFixed(4)}).`;
  } else {
    answer.top_k_labels.forEach((label, i) => addRow(label, answer.top_k_scores[i], ""));
    const shown = answer.top_k_labels.length;
    $("summary").textContent = `The top ${shown} of ${model.class_names.length} classes.`;
  }
}

function showOverlay(model, cam) {
  return new Promise((resolve, reject) => {
    const image = $("overlay");
    image.onload = () => resolve();
    image.onerror = () => reject(new Error("The Grad-CAM overlay could not be shown."));
    $("overlay-caption").textContent =
      `Grad-CAM of ${cam.class_labels} (${cam.scores.toFixed(4)}), stage ${model.stage}`;
    $("overlay-figure").hidden = false;
    image.src = `data:image/png;base64,${cam.overlay_png_bytes.b64}`;
  });
}

async function send(file) {
  const model = models[current];
  if (!file || !model.classifier) return;
  const mine = ++ticket;
  document.body.dataset.sent = String(Number(document.body.dataset.sent || 0) + 1);
  clearResult();
  setState("busy", `Sending ${file.name} to ${model.id}...`);
  try {
    const {url, b64} = await readFile(file);
    const answer = await call(model, "serving_bytes", b64);
    if (mine !== ticket) return;
    showClasses(model, answer);
    $("preview").src = url;
    $("result").hidden = false;
    if (model.grad_cam) {
      const cam = await call(model, "grad_cam", b64);
      if (mine !== ticket) return;
      await showOverlay(model, cam);
    }
    setState("done", `${file.name}: ${model.id}`);
  } catch (error) {
    if (mine === ticket) showError(error.message);
  }
}

$("model").addEventListener("change", (event) => select(Number(event.target.value)));
$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  event.target.value = "";  // the same file can be chosen again
  send(file);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  send(event.dataTransfer.files[0]);
});
select(0);
"""


def _hash(text):
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def _model_json(card):
    """What the script needs of a model (the card's words are rendered by the server)."""
    classifier = card["kind"] in CLASSIFIER_KINDS
    if classifier:
        notice = ""
    elif card["kind"] in KIND_TITLES:
        notice = (f"This page shows classifiers; {card['name']} is a {KIND_TITLES[card['kind']]}: "
                  f"ask its REST API (POST {_url(card)}) for its outputs.")
    else:
        notice = (f"This page shows keras_resnet classifiers; {card['name']} has no keras_resnet "
                  "metadata saying what it predicts.")
    return {"id": card["id"], "name": card["name"], "kind": card["kind"], "url": _url(card),
            "classifier": classifier, "notice": notice, "grad_cam": card["grad_cam"] and classifier,
            "stage": card["stage"], "class_names": card["class_names"],
            "thresholds": card["thresholds"]}


def _url(card):
    return f"/v1/models/{quote(card['name'], safe='')}/versions/{card['version']}:predict"


def _definitions(rows):
    return "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd>"
                   for label, text in rows)


def _card_html(card):
    metrics = "".join(f"<h3>{html.escape(heading)}</h3><dl>{_definitions(rows)}</dl>"
                      for heading, rows in card["metrics"])
    metrics = metrics or "<p>No metrics recorded with this export.</p>"
    return (f'<section class="card" data-model="{html.escape(card["id"])}" hidden>'
            f"<h2>{html.escape(card['title'])}</h2><dl>{_definitions(card['rows'])}</dl>{metrics}"
            "</section>")


def render_page(cards):
    """The page's HTML, and the Content-Security-Policy to send with it.

    Args:
        cards: one :func:`~keras_resnet.serving.card.model_card` per served model version,
            in the selector's order.

    Returns:
        ``(html, policy)``: the whole document (str) and a policy allowing only its own inline
        script and style (by their SHA-256), ``data:`` images and requests to the server.

    Example:
        >>> page, policy = render_page([model_card(servable, "exports")])  # doctest: +SKIP
    """
    options = "".join(f'<option value="{i}">{html.escape(card["name"])} '
                      f'(version {card["version"]})</option>' for i, card in enumerate(cards))
    data = json.dumps([_model_json(card) for card in cards], ensure_ascii=True)
    data = data.replace("<", "\\u003c")  # no "</script>" inside the script
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>keras_resnet serving</title>
<style>{_STYLE}</style></head>
<body data-state="loading">
<header><h1>keras_resnet serving</h1>
<p>Choose or drop an image: this page sends it to the model's REST API
(<code>POST /v1/models/NAME/versions/N:predict</code>, signature <code>serving_bytes</code>,
as any client would) and shows the answer.</p></header>
<main><div class="left">
<label for="model">Model</label> <select id="model">{options}</select>
<div id="drop" class="drop">Drop an image here, or choose a file:
<input type="file" id="file" aria-label="image file"></div>
<p id="notice" class="notice" hidden></p>
<p id="status" aria-live="polite"></p>
<p id="error" class="error" role="alert" hidden></p>
<div id="result" hidden><div class="images">
<figure><img id="preview" alt="the image sent"><figcaption>the image sent</figcaption></figure>
<figure id="overlay-figure" hidden><img id="overlay" alt="Grad-CAM overlay">
<figcaption id="overlay-caption"></figcaption></figure></div>
<table><thead><tr><th>class</th><th>probability</th><th></th></tr></thead>
<tbody id="classes"></tbody></table><p id="summary"></p></div>
</div>
<aside>{"".join(_card_html(card) for card in cards)}</aside></main>
<script type="application/json" id="models">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    policy = (f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; "
              "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return document, policy
