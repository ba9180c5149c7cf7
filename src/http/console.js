// The console holds no data until someone signs in. Tokens live in this page's memory only
// (never in its address, storage or cookies): a reload signs out. The access token is
// refreshed a minute before it expires.
const api = "/api/v1";
const session = { access: null, refresh: null, timer: null, poller: null };
// ?actor=kind/id opens that actor's pane (a link an operator can share; it holds no secret).
const params = new URLSearchParams(location.search);
let picked = params.get("actor") ? params.get("actor").split(/\/(.*)/s).slice(0, 2) : null;

function show(signedIn) {
  document.getElementById("signin").classList.toggle("hidden", signedIn);
  document.getElementById("console").classList.toggle("hidden", !signedIn);
  document.getElementById("signout").classList.toggle("hidden", !signedIn);
}

async function post(path, body) {
  const response = await fetch(api + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error((json.title || response.status) + ": " + (json.detail || ""));
  return json;
}

function keep(pair) {
  session.access = pair.access_token;
  session.refresh = pair.refresh_token;
  clearTimeout(session.timer);
  const inMs = Math.max(5, pair.expires_in - 60) * 1000;
  session.timer = setTimeout(renew, inMs);
}

async function renew() {
  try { keep(await post("/auth/refresh", { refresh_token: session.refresh })); }
  catch (e) { signOut("Your session ended: " + e.message); }
}

async function start() {
  const me = await call("/auth/me");
  if (!me.roles.includes("operator") && !me.roles.includes("admin")) {
    throw new Error("the console needs an operator or admin account");
  }
  document.getElementById("who").textContent = me.email || me.id;
  show(true);
  refresh();
  refreshDetail();
  session.poller = setInterval(refresh, 2000);
}

async function signIn(event) {
  event.preventDefault();
  const note = document.getElementById("signin-error");
  note.textContent = "";
  const token = document.getElementById("token").value.trim();
  try {
    if (token) {
      session.access = token;
      session.refresh = null;
    } else {
      keep(await post("/auth/login", {
        email: document.getElementById("email").value,
        password: document.getElementById("password").value,
      }));
    }
    document.getElementById("password").value = "";
    document.getElementById("token").value = "";
    await start();
  } catch (e) {
    note.textContent = e.message;
    session.access = null;
    session.refresh = null;
  }
}

function signOut(message) {
  if (session.refresh) post("/auth/logout", { refresh_token: session.refresh }).catch(() => {});
  clearTimeout(session.timer);
  clearInterval(session.poller);
  session.access = null;
  session.refresh = null;
  show(false);
  document.getElementById("signin-error").textContent = message || "";
}

document.getElementById("signin-form").addEventListener("submit", signIn);
document.getElementById("signout").addEventListener("click", () => signOut());

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

async function call(path, method) {
  const response = await fetch(api + path, {
    method: method || "GET",
    headers: { "Authorization": "Bearer " + session.access },
  });
  const body = await response.json();
  if (!response.ok) throw new Error((body.title || response.status) + ": " + (body.detail || ""));
  return body;
}

function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  cells.forEach(c => tr.appendChild(c));
  return tr;
}

function showOverview(o) {
  document.getElementById("node").textContent = o.node + " · store " + o.store + " · up " + o.uptime_secs + " s";
  const kinds = document.querySelector("#kinds tbody");
  kinds.replaceChildren(...o.kinds.map(k => row([cell(k.kind), cell(k.running, "num"), cell(k.parked, "num"), cell(k.failed, k.failed ? "num failed" : "num")])));
  const j = o.journal;
  const figures = [["group commits", j.batches], ["events", j.events], ["rows", j.rows],
    ["avg rows per commit", j.avg_batch_rows.toFixed(1)], ["avg commit µs", j.avg_commit_micros.toFixed(0)],
    ["slowest commit µs", j.commit_micros_max], ["fsyncs", j.syncs], ["slowest fsync µs", j.sync_micros_max],
    ["failures", j.failures], ["live sessions", o.live.sessions]];
  document.querySelector("#journal tbody").replaceChildren(...figures.map(([k, v]) => row([cell(k), cell(v, "num")])));
}

function showTree(t) {
  const list = document.createElement("ul");
  const root = document.createElement("li");
  root.textContent = t.name;
  const regions = document.createElement("ul");
  t.children.forEach(r => {
    const li = document.createElement("li");
    li.textContent = r.name + " (" + r.running + " running, " + r.parked + " parked, " + r.failed + " failed)";
    if (r.children.length) {
      const kids = document.createElement("ul");
      r.children.forEach(c => { const k = document.createElement("li"); k.textContent = c; kids.appendChild(k); });
      if (r.running > r.children.length) { const more = document.createElement("li"); more.textContent = "… " + (r.running - r.children.length) + " more"; kids.appendChild(more); }
      li.appendChild(kids);
    }
    regions.appendChild(li);
  });
  root.appendChild(regions);
  list.appendChild(root);
  document.getElementById("tree").replaceChildren(list);
}

function showActors(list) {
  const body = document.querySelector("#actors tbody");
  body.replaceChildren(...list.items.map(a => {
    const tr = row([cell(a.kind), cell(a.id), cell(a.status, a.status), cell(a.mailbox_len, "num"), cell(a.restarts, "num"),
      cell(a.last_seq, "num"), cell(a.snapshot_seq, "num"), cell(a.last_active_at)], "pick");
    tr.onclick = () => { picked = [a.kind, a.id]; refreshDetail(); };
    return tr;
  }));
}

// The payments panel: the gateway's circuit breaker (from the overview) and the payment
// sagas in flight, then the latest failed ones, each with the steps its attempt ran.
const breakerNames = { closed: "closed", half_open: "half-open", open: "open" };
const breakerClasses = { closed: "done", half_open: "parked", open: "failed" };
const sagaClasses = { RUNNING: "active", COMPENSATING: "parked", CONFIRMED: "done", FAILED: "failed", REFUNDED: "done" };
const stepMarks = { DONE: " ✓", RUNNING: " …", FAILED: " ✗" };
const stepClasses = { DONE: "done", RUNNING: "active", FAILED: "failed" };

function showGateway(g) {
  const box = document.getElementById("gateway");
  if (!g) { box.textContent = "gateway: not reported"; return; }
  const state = document.createElement("span");
  state.textContent = breakerNames[g.breaker] || String(g.breaker);
  state.className = breakerClasses[g.breaker] || "";
  const after = " · " + g.failures + " recent failures" + (g.opened_at ? " · opened at " + g.opened_at : "");
  box.replaceChildren(document.createTextNode("gateway " + g.url + " · breaker "), state, document.createTextNode(after));
}

function stepsCell(steps) {
  const td = document.createElement("td");
  td.className = "steps";
  steps.forEach((s, i) => {
    if (i) { const sep = document.createElement("span"); sep.className = "sep"; sep.textContent = " → "; td.appendChild(sep); }
    const span = document.createElement("span");
    span.textContent = s.name + (stepMarks[s.status] || "");
    span.className = stepClasses[s.status] || "";
    span.title = String(s.status).toLowerCase() + " · started " + s.started_at + (s.ended_at ? " · ended " + s.ended_at : "");
    td.appendChild(span);
  });
  return td;
}

function sagaRow(s) {
  const failure = s.failure ? s.failure.step + ": " + s.failure.code + " (" + s.failure.detail + ")" : null;
  const tr = row([cell(s.order_id), cell(s.status, sagaClasses[s.status]), cell(s.kind), cell(s.attempt, "num"),
    cell(s.started_at), stepsCell(s.steps), cell(failure, failure ? "failed" : null)], "pick");
  tr.onclick = () => { picked = ["pay_saga", s.order_id]; refreshDetail(); };
  return tr;
}

function groupRow(label) {
  const td = cell(label);
  td.colSpan = 7;
  return row([td], "group");
}

function showSagas(inFlight, failed) {
  const rows = [groupRow("In flight (" + inFlight.items.length + (inFlight.next_cursor ? "+" : "") + ")")];
  rows.push(...(inFlight.items.length ? inFlight.items.map(sagaRow) : [groupRow("none")]));
  rows.push(groupRow("Latest failed"));
  rows.push(...(failed.items.length ? failed.items.map(sagaRow) : [groupRow("none")]));
  document.querySelector("#sagas tbody").replaceChildren(...rows);
}

async function act(action) {
  try { await call("/admin/actors/" + encodeURIComponent(picked[0]) + "/" + encodeURIComponent(picked[1]) + "/" + action, "POST"); }
  catch (e) { document.getElementById("error").textContent = e.message; }
  refresh();
}

async function refreshDetail() {
  if (!picked) return;
  const box = document.getElementById("detail");
  try {
    const d = await call("/admin/actors/" + encodeURIComponent(picked[0]) + "/" + encodeURIComponent(picked[1]));
    const title = document.createElement("div");
    const name = document.createElement("b");
    name.textContent = picked[0] + " " + picked[1];
    title.appendChild(name);
    const buttons = document.createElement("div");
    ["snapshot", "passivate", "restart"].forEach(a => { const b = document.createElement("button"); b.textContent = a; b.onclick = () => act(a); buttons.appendChild(b); });
    const state = document.createElement("pre");
    state.textContent = JSON.stringify(d.state, null, 2);
    const events = document.createElement("pre");
    events.textContent = (d.recent_events || []).map(e => e.seq + "  " + e.at + "  " + e.event).join("\n");
    box.replaceChildren(title, buttons, state, events);
  } catch (e) { box.textContent = e.message; }
}

async function refresh() {
  if (!session.access) return;
  try {
    const [overview, tree, actors, inFlight, failed] = await Promise.all([call("/admin/overview"), call("/admin/supervision"),
      call("/admin/actors?limit=100"), call("/admin/sagas?status=in_flight&limit=100"), call("/admin/sagas?status=FAILED&limit=10")]);
    showOverview(overview); showTree(tree); showActors(actors); showGateway(overview.gateway); showSagas(inFlight, failed); refreshDetail();
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) { document.getElementById("error").textContent = e.message; }
}

show(false);
