//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against a real server. Sign in with a token, create a function in the editor, run it,
//! open its execution and see the nested call's bar in the waterfall, follow a running
//! execution live, and a hostile function's output shown as text with no script run.

mod common;
mod idp;

use std::time::{Duration, Instant};

use common::{start, start_with, Backend, TestApp};

/// One browser at a time: the machine has two cores, and each test drives its own Chromium.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use serde_json::{json, Value};

/// A W3C WebDriver session on a chromedriver this test started (and stops).
struct Browser {
    http: reqwest::Client,
    url: String,
    driver: std::process::Child,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        let driver_bin = std::env::var("MAESTRO_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{driver_bin} runs ({e}): install chromium and chromium-driver (scripts/test does)")
            });
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "chromedriver answers");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
        ];
        args.push("--lang=en-US");
        let mut options = json!({"args": args});
        if let Ok(bin) = std::env::var("MAESTRO_CHROMIUM") {
            options["binary"] = json!(bin);
        } else if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a browser session: {v}"));
        let b = Browser {
            url: format!("{base}/session/{id}"),
            http,
            driver,
        };
        // The page itself at 1280x800 (the window's frame takes some of a window's size).
        let inner = b.js("return [window.innerWidth, window.innerHeight]", json!([])).await;
        let (w, h) = (inner[0].as_i64().unwrap_or(1280), inner[1].as_i64().unwrap_or(800));
        let rect = json!({"width": 1280 + (1280 - w), "height": 800 + (800 - h)});
        b.cmd(reqwest::Method::POST, "/window/rect", Some(rect)).await;
        b
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The first element matching `css`, waiting up to 20 s for it.
    async fn find(&self, css: &str) -> String {
        let t = Instant::now();
        loop {
            let v = self
                .cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no `{css}` on the page: {}",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn type_in(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({})))
            .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Press keys on whatever has focus (WebDriver key codes: Tab `\u{E004}`, Enter `\u{E007}`).
    async fn keys(&self, keys: &str) {
        let mut actions = vec![];
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Every visible text on the page is readable: its contrast with the background behind it
    /// is at least WCAG AA's (4.5:1, 3:1 for large text), computed from the styles in force.
    async fn assert_contrast(&self, page: &str) {
        let bad = self
            .js(
                r#"const rgb = (s) => { const m = (s || '').match(/rgba?\(([^)]+)\)/); return m ? m[1].split(/[ ,\/]+/).filter(Boolean).map(Number) : null; };
                const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                                     return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
                const opaque = (c) => c && (c.length < 4 || c[3] > 0.5);
                const paint = (e) => (e instanceof SVGElement ? rgb(getComputedStyle(e).fill) : rgb(getComputedStyle(e).backgroundColor));
                // What is painted behind the text's middle (elements in paint order), else its ancestors'.
                const behind = (el, r) => {
                  const [x, y] = [r.left + r.width / 2, r.top + r.height / 2];
                  if (x >= 0 && y >= 0 && x < innerWidth && y < innerHeight) {
                    for (const e of document.elementsFromPoint(x, y)) {
                      if (e === el || e.tagName === 'text' || e.tagName === 'svg' || e.tagName === 'g') continue;
                      const c = paint(e); if (opaque(c)) return c.slice(0, 3);
                    }
                  }
                  for (let e = el.parentElement; e; e = e.parentElement) { const c = paint(e); if (opaque(c) && !(e instanceof SVGElement)) return c.slice(0, 3); }
                  return [255, 255, 255];
                };
                const bad = [];
                let checked = 0;
                for (const el of document.querySelectorAll('body *')) {
                  if (el.matches(':disabled') || el.closest('.skip')) continue;
                  if (el instanceof SVGElement && el.tagName !== 'text') continue;
                  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
                  const r = el.getBoundingClientRect(); const cs = getComputedStyle(el);
                  if (!r.width || !r.height || cs.visibility === 'hidden') continue;
                  const ink = el.tagName === 'text' ? rgb(cs.fill) : rgb(cs.color);
                  const own = el.tagName === 'text' ? null : rgb(cs.backgroundColor);
                  const back = opaque(own) ? own.slice(0, 3) : behind(el, r);
                  const [a, b] = [lum(ink.slice(0, 3)), lum(back)].sort((x, y) => y - x);
                  const ratio = (a + 0.05) / (b + 0.05);
                  const size = parseFloat(cs.fontSize);
                  const large = size >= 24 || (size >= 18.66 && +cs.fontWeight >= 700);
                  checked++;
                  if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName}.${el.className.baseVal ?? el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
                }
                if (checked < 5) bad.push(`only ${checked} texts checked`);
                return bad.slice(0, 12);"#,
                json!([]),
            )
            .await;
        assert_eq!(bad, json!([]), "text too faint to read on {page}");
    }

    /// The text of the first element matching `css` ("" when there is none).
    async fn text(&self, css: &str) -> String {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                json!([css]),
            )
            .await;
        v.as_str().unwrap_or("").to_string()
    }

    /// Wait up to 30 s for `css`'s text to contain `want`; answers the text.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let t = Instant::now();
        loop {
            let text = self.text(css).await;
            if text.contains(want) {
                return text;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "`{css}` never said `{want}`: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// With MAESTRO_SCREENSHOTS=DIR, save the page as DIR/NAME.png (for the README's docs/).
    async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("MAESTRO_SCREENSHOTS") else {
            return;
        };
        use base64::Engine;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
    }

    async fn path(&self) -> String {
        self.js("return location.pathname", json!([]))
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn sign_in(b: &Browser, app: &TestApp) {
    b.goto(&format!("{}/", app.base)).await;
    b.type_in("#token", &app.token).await;
    b.click("#signin").await;
    b.find("#executions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let _one = ONE_BROWSER.lock().await;
    let app = start(Backend::Sqlite).await;
    let b = Browser::start().await;

    // `/` leads to the console; a wrong token is refused on the sign-in page.
    b.goto(&format!("{}/", app.base)).await;
    assert_eq!(b.path().await, "/ui/");
    b.type_in("#token", "not-a-token").await;
    b.click("#signin").await;
    b.wait_text("form.signin", "unauthorized").await;
    sign_in(&b, &app).await;

    // A first load: its first paint is reported (BENCHMARKS.md records it; speed is not
    // asserted here), and it asks the API only for what the page shows.
    b.goto(&format!("{}/ui/executions", app.base)).await;
    // The rows are in once the list's call has answered (a call is timed when it ends).
    b.wait_text("#executions", "No executions match").await;
    let load = b
        .js(
            "const p = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint'); \
             const r = performance.getEntriesByType('resource'); \
             return [p ? p.startTime : -1, r.length, r.filter((e) => e.name.includes('/api/v1/')).length];",
            json!([]),
        )
        .await;
    eprintln!(
        "console first load: first paint {} ms, {} requests after the page, {} to the API",
        load[0], load[1], load[2]
    );
    let api_calls = load[2].as_u64().unwrap();
    assert!((1..=3).contains(&api_calls), "{load}");

    // Create a function in the editor that calls another, run it from its page.
    app.create(
        "leaf",
        "def leaf(input):\n    print('in leaf')\n    return input['x'] + 1\n",
    )
    .await;
    b.goto(&format!("{}/ui/new-function", app.base)).await;
    b.type_in("#fn-name", "outer").await;
    let code = "def outer(input):\n    print('calling leaf')\n    y = leaf({'x': input['x']})\n    print('back')\n    return y * 10\n";
    b.js(
        "document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])",
        json!([code]),
    )
    .await;
    b.click("#create").await;
    b.find("#run").await;
    assert_eq!(b.path().await, "/ui/functions/outer");
    let (_, f) = app.get("/api/v1/functions/outer").await;
    assert_eq!(f["code"], code, "the editor's text was saved");
    b.type_in("#run-input", r#"{"x": 4}"#).await;
    b.click("#run").await;
    let answer = b.wait_text("#run-answer", "succeeded").await;
    assert!(answer.contains("50"), "{answer}");

    // Its execution: the nested call's bar sits inside the caller's on the time axis.
    b.click("#run-answer a").await;
    b.find("#waterfall .wf-row[data-depth='1'][data-function='leaf']").await;
    let geometry = b
        .js(
            "const bar = (q) => document.querySelector(q + ' .wf-bar').getBoundingClientRect(); \
             const o = bar(\"#waterfall .wf-row[data-depth='0']\"); \
             const l = bar(\"#waterfall .wf-row[data-depth='1']\"); \
             return [o.left, o.right, l.left, l.right, l.width];",
            json!([]),
        )
        .await;
    let g: Vec<f64> = geometry
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(g[4] > 0.0, "the nested bar is drawn: {g:?}");
    assert!(
        g[4] < g[1] - g[0] && g[2] >= g[0],
        "the call is shorter than its caller and starts later: {g:?}"
    );
    assert!(
        g[2] >= g[0] - 0.5 && g[3] <= g[1] + 0.5,
        "the nested bar lies within its caller's: {g:?}"
    );
    b.wait_text("#logs", "[outer] calling leaf").await;
    // The lines in the order they were printed, across calls (not grouped by call): the
    // replay of the run's history replaces the stored lines once it has them all.
    let ordered = |l: &str| {
        let (x, y, z) = (
            l.find("[outer] calling leaf"),
            l.find("[leaf] in leaf"),
            l.find("[outer] back"),
        );
        x.is_some() && x < y && y < z
    };
    let mut logs = b.text("#logs").await;
    for _ in 0..50 {
        if ordered(&logs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        logs = b.text("#logs").await;
    }
    assert!(ordered(&logs), "printed order: {logs}");
    b.click("#waterfall .wf-row[data-depth='1'] .wf-label").await;
    b.wait_text("#step-detail h2", "leaf").await;
    assert!(b.text("#step-detail h2").await.starts_with("leaf"));
    assert_eq!(b.text("#step-detail .output").await.trim(), "5");
    b.screenshot("console-execution").await;
    b.assert_contrast("execution").await;

    // A running execution followed live: its first line shows before it ends.
    app.create(
        "slow",
        "import time\ndef slow(input):\n    print('first', flush=True)\n    time.sleep(4)\n    print('second')\n    return 1\n",
    )
    .await;
    let (_, v) = app.post("/api/v1/functions/slow/invoke?async=true", json!({})).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/executions/{id}", app.base)).await;
    b.wait_text("#logs", "first").await;
    let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(e["status"], "running", "the line came before the end");
    assert!(!b.text("#logs").await.contains("second"));
    b.wait_text("#logs", "second").await;
    b.wait_text("main .title", "succeeded").await;

    // The executions list shows them, filtered by function.
    b.goto(&format!("{}/ui/executions?function=slow", app.base)).await;
    let list = b.wait_text("#executions", "slow").await;
    assert!(!list.contains("outer"), "{list}");
    b.goto(&format!("{}/ui/executions", app.base)).await;
    let list = b.wait_text("#executions", "outer").await;
    // Live: a run started elsewhere appears without a reload.
    assert!(!list.contains("leaf"), "{list}");
    b.wait_text("main .title", "live").await;
    app.invoke("leaf", json!({"x": 1})).await;
    b.wait_text("#executions", "leaf").await;
    b.screenshot("console-executions").await;
    b.assert_contrast("executions").await;
    b.goto(&format!("{}/ui/functions/outer", app.base)).await;
    b.find(".CodeMirror").await;
    b.screenshot("console-function").await;
    b.assert_contrast("function").await;

    // Hostile output is text: nothing it carries runs or becomes an element.
    let evil = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    app.create(
        "evil",
        &format!("def evil(input):\n    print({evil:?})\n    return {evil:?}\n"),
    )
    .await;
    let (_, v) = app.invoke("evil", json!({})).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/executions/{id}", app.base)).await;
    let out = b.wait_text("#step-detail .output", "<script>").await;
    assert!(out.contains("onerror"), "{out}");
    b.wait_text("#logs", "<img src=x").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = b
        .js(
            "return [window.__pwned === undefined, document.querySelectorAll('main img, main script').length]",
            json!([]),
        )
        .await;
    assert_eq!(state, json!([true, 0]), "no script ran and no element was made");

    // Schedules: next fire times, and pause from the page.
    let (st, sched) = app
        .post(
            "/api/v1/schedules",
            json!({"name": "nightly", "function_name": "leaf", "cron_expression": "0 3 * * *",
                   "timezone": "Europe/Paris", "input_data": {"x": 1}}),
        )
        .await;
    assert_eq!(st, 201, "{sched}");
    b.goto(&format!("{}/ui/schedules", app.base)).await;
    let row = "#schedules tr[data-schedule='nightly']";
    let text = b.wait_text(row, "0 3 * * *").await;
    assert!(text.contains("Europe/Paris") && text.contains("never"), "{text}");
    let fire_times = b
        .js(
            "return document.querySelectorAll(arguments[0] + ' td.next div div').length",
            json!([row]),
        )
        .await;
    assert_eq!(fire_times, json!(3), "the next three fire times");
    b.screenshot("console-schedules").await;
    b.assert_contrast("schedules").await;
    b.click(&format!("{row} button[data-action='pause']")).await;
    b.find(&format!("{row} button[data-action='resume']")).await;
    let (_, v) = app
        .get(&format!("/api/v1/schedules/{}", sched["id"].as_str().unwrap()))
        .await;
    assert_eq!(v["enabled"], false, "paused on the server: {v}");

    // Webhooks: the full URL, a curl that signs the body, and the recent answers.
    let (st, hook) = app
        .post(
            "/api/v1/webhooks",
            json!({"path": "leaf-in", "function_name": "leaf", "http_method": "POST", "input_mode": "body",
                   "requires_auth": true}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/h/leaf-in", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"x": 41}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    b.goto(&format!("{}/ui/webhooks", app.base)).await;
    let card = b.wait_text("#webhooks [data-webhook='leaf-in']", "succeeded").await;
    assert!(card.contains(&format!("{}/api/v1/h/leaf-in", app.base)), "{card}");
    assert!(card.contains("X-Maestro-Signature: sha256=$SIG"), "{card}");

    workflow_run(&b, &app).await;
    version_diff_and_time_range(&b, &app).await;
    operator(&b, &app).await;

    // At a phone's width the page does not overflow sideways (wide tables scroll inside).
    b.cmd(
        reqwest::Method::POST,
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    )
    .await;
    for page in ["/ui/executions", "/ui/functions/outer", "/ui/workflows/pipeline"] {
        b.goto(&format!("{}{page}", app.base)).await;
        b.find("main h1").await;
        // What sticks out past the right edge (none, when the page fits).
        let over = b
            .js(
                "const out = []; for (const e of document.querySelectorAll('body *')) { \
                   if (e.closest('.scroll')) continue; \
                   const r = e.getBoundingClientRect(); \
                   if (r.right > window.innerWidth + 1) out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right)); } \
                 return [document.documentElement.scrollWidth <= window.innerWidth + 1, out.slice(0, 8)];",
                json!([]),
            )
            .await;
        assert_eq!(over[0], json!(true), "{page} fits a phone's width: {over}");
    }

    // The console's pages and assets carry the policy that forbids inline script.
    let resp = reqwest::get(format!("{}/ui/executions", app.base)).await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    app.stop().await;
}

/// A workflow's run: the DAG laid out top-down, each node in its state (as the server has
/// it), and a node chosen with the keyboard showing its attempts and error.
async fn workflow_run(b: &Browser, app: &TestApp) {
    app.define(&[
        ("fetch", "    return {'n': 2}"),
        ("double", "    return input['fetch']['n'] * 2"),
        ("flaky", "    raise ValueError('no luck')"),
        ("report", "    return 'never'"),
    ])
    .await;
    let (s, w) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "pipeline",
                   "nodes": ["fetch", "double", {"function": "flaky", "retries": 1, "retry_delay_seconds": 0.1}, "report"],
                   "edges": [["fetch", "double"], ["fetch", "flaky"], ["double", "report"], ["flaky", "report"]]}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    b.goto(&format!("{}/ui/workflows", app.base)).await;
    b.click("#workflows a").await;
    b.find("svg.dag g[data-node='report']").await;
    b.click("#wf-run").await;
    b.find("#wf-graph g[data-node='report'][data-status='skipped']").await;
    // The run's end is written after its last node's: the page shows it when it is.
    b.wait_text("main .title", "failed").await;
    let id = b.path().await.rsplit('/').next().unwrap().to_string();
    let (_, run) = app.get(&format!("/api/v1/workflows/pipeline/runs/{id}")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let shown = b
        .js(
            "const out = {}; for (const g of document.querySelectorAll('#wf-graph g[data-node]')) \
             out[g.dataset.node] = [g.dataset.status, g.getBoundingClientRect().top]; return out;",
            json!([]),
        )
        .await;
    for n in ["fetch", "double", "flaky", "report"] {
        assert_eq!(shown[n][0], run["nodes"][n]["status"], "{n}: {shown} vs {run}");
    }
    assert_eq!(shown["flaky"][0], "failed");
    assert_eq!(shown["double"][0], "succeeded");
    let top = |n: &str| shown[n][1].as_f64().unwrap();
    assert!(
        top("fetch") < top("double") && top("double") < top("report") && top("double") == top("flaky"),
        "laid out by layer, parents above children: {shown}"
    );
    // Keyboard only: Tab from the top of the page reaches the node; Enter opens it.
    b.js("document.activeElement.blur(); window.scrollTo(0, 0)", json!([]))
        .await;
    let mut reached = false;
    for _ in 0..60 {
        b.keys("\u{E004}").await;
        let at = b
            .js("return document.activeElement.dataset.node || ''", json!([]))
            .await;
        if at == "flaky" {
            reached = true;
            break;
        }
    }
    assert!(reached, "the node is reachable with Tab");
    b.keys("\u{E007}").await;
    let detail = b.wait_text("#node-detail", "no luck").await;
    assert!(detail.contains("ValueError"), "{detail}");
    let attempts = b
        .js(
            "return document.querySelectorAll('#attempts tbody tr').length",
            json!([]),
        )
        .await;
    assert_eq!(attempts, json!(2), "one retry: two attempts listed");
    b.screenshot("console-workflow").await;
    b.assert_contrast("workflow").await;
    // The run, listed among executions and opened as one, leads back to its graph.
    let graph = format!("a[href='/ui/workflows/pipeline/runs/{id}']");
    b.goto(&format!("{}/ui/executions", app.base)).await;
    b.find(&format!("#executions {graph}")).await;
    b.goto(&format!("{}/ui/executions/{id}", app.base)).await;
    b.find(&format!("main {graph}")).await;
}

/// Two versions compared line by line; the executions list narrowed to a time range.
async fn version_diff_and_time_range(b: &Browser, app: &TestApp) {
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/functions/leaf",
            Some(json!({"code": "def leaf(input):\n    return input['x'] + 2\n"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    b.goto(&format!("{}/ui/functions/leaf", app.base)).await;
    let diff = b.wait_text("#diff-code", "+ ").await;
    assert!(
        diff.contains("-     return input['x'] + 1") && diff.contains("+     return input['x'] + 2"),
        "{diff}"
    );
    assert!(!diff.contains("+ def leaf"), "an unchanged line is not marked: {diff}");
    // Comparing a version with itself shows no change.
    b.js(
        "const s = document.getElementById('diff-from'); s.value = '2'; s.dispatchEvent(new Event('change'))",
        json!([]),
    )
    .await;
    b.wait_text("#diff-code", "No change").await;

    // Started within the last hour: every run so far; from an hour ahead: none.
    let hour = chrono::Duration::hours(1);
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    b.goto(&format!(
        "{}/ui/executions?since={}",
        app.base,
        at(chrono::Utc::now() - hour)
    ))
    .await;
    b.wait_text("#executions", "outer").await;
    b.goto(&format!(
        "{}/ui/executions?since={}",
        app.base,
        at(chrono::Utc::now() + hour)
    ))
    .await;
    b.wait_text("#executions", "No executions match").await;
}

/// An admin's operator page: quotas against usage, scheduler, pool metrics, subtenants; and
/// acting in a subtenant from there.
async fn operator(b: &Browser, app: &TestApp) {
    let admin = app
        .keys
        .mint(&app.tenant, "ops@example.com", true, Duration::from_secs(3600))
        .unwrap();
    let sub = format!("{}-team", app.tenant);
    let (s, v) = app
        .call_as(
            &admin,
            reqwest::Method::POST,
            "/api/v1/subtenants",
            Some(json!({"subtenant_id": sub, "description": "the team", "quotas": {"max_functions": 7}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    b.click("#signout").await;
    b.type_in("#token", &admin).await;
    b.click("#signin").await;
    b.find("#executions").await;
    b.click("#nav a[href='/ui/operator']").await;
    let (_, fns) = app.get("/api/v1/functions?limit=1").await;
    let row = b.wait_text("#quotas tbody tr", "Functions").await;
    assert!(
        row.ends_with(&fns["total"].to_string()),
        "functions in use: {row} vs {fns}"
    );
    b.wait_text("#scheduler", "Active schedules").await;
    b.wait_text("#pool", "maestro_sandbox_").await;
    let line = format!("#subtenant-list tr[data-subtenant='{sub}']");
    let text = b.wait_text(&line, "max_functions").await;
    assert!(text.contains("the team"), "{text}");
    b.screenshot("console-operator").await;
    b.assert_contrast("operator").await;
    b.click(&format!("{line} button")).await;
    b.find("#leave-subtenant").await;
    b.goto(&format!("{}/ui/functions", app.base)).await;
    b.wait_text("#functions", "No functions yet").await;
    b.click("#leave-subtenant").await;
    b.goto(&format!("{}/ui/functions", app.base)).await;
    b.wait_text("#functions", "outer").await;
}

/// With an identity provider set up, the sign-in page offers it: the browser goes there and
/// back (authorization code with PKCE), and the console acts with the provider's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_identity_provider() {
    let _one = ONE_BROWSER.lock().await;
    let tenant = format!("t-{}", uuid::Uuid::new_v4().simple());
    let idp = idp::start("ada@example.com", &tenant).await;
    let jwks = format!("{}/tests/fixtures/jwks.json", env!("CARGO_MANIFEST_DIR"));
    let (authorize, token) = (format!("{idp}/authorize"), format!("{idp}/token"));
    let app = start_with(
        Backend::Sqlite,
        &[
            "--auth-jwks",
            &jwks,
            "--auth-issuer",
            idp::ISSUER,
            "--auth-audience",
            idp::AUDIENCE,
            "--console-oidc-authorize-url",
            &authorize,
            "--console-oidc-token-url",
            &token,
            "--console-oidc-client-id",
            idp::CLIENT_ID,
        ],
    )
    .await;
    // The policy lets the page post the code to the provider, and nowhere else.
    let resp = reqwest::get(format!("{}/ui/", app.base)).await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains(&format!("connect-src 'self' {idp};")), "{csp}");

    let b = Browser::start().await;
    b.goto(&format!("{}/ui/functions", app.base)).await;
    b.click("#oidc-signin").await;
    // Back from the provider, signed in as its user, on the page the user asked for.
    b.find("#functions").await;
    assert_eq!(b.path().await, "/ui/functions");
    b.wait_text("#who", "ada@example.com").await;
    assert!(b.text("#who").await.contains(&tenant));
    // The server took the access token (its audience is the API's), not the ID token.
    let stored = b.js("return sessionStorage.getItem('maestro.token')", json!([])).await;
    let payload = stored.as_str().unwrap().split('.').nth(1).unwrap().to_string();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], idp::AUDIENCE, "{claims}");

    // A stale return (Back into the provider) or a link made elsewhere leaves the user signed
    // in, and shows nothing the link carried.
    b.goto(&format!(
        "{}/ui/oidc?error=x&error_description=Paste+your+token+at+evil.example&state=forged",
        app.base
    ))
    .await;
    b.wait_text("#who", "ada@example.com").await;
    assert_eq!(b.path().await, "/ui/");
    assert!(!b.text("body").await.contains("evil.example"));

    // A code is taken once: the same code again, with a state this tab did send, is refused
    // by the provider, and the page says so.
    let last: Value = reqwest::get(format!("{idp}/last")).await.unwrap().json().await.unwrap();
    b.click("#signout").await;
    b.find("form.signin").await;
    b.js(
        "sessionStorage.setItem('maestro.oidc', JSON.stringify({verifier: 'v'.repeat(43), state: arguments[0], back: '/ui/'}))",
        json!([last[1]]),
    )
    .await;
    b.goto(&format!(
        "{}/ui/oidc?code={}&state={}",
        app.base,
        last[0].as_str().unwrap(),
        last[1].as_str().unwrap()
    ))
    .await;
    b.wait_text("form.signin", "unknown or used code").await;
    let signed_out = b.js("return sessionStorage.getItem('maestro.token')", json!([])).await;
    assert_eq!(signed_out, Value::Null);
    app.stop().await;
}
