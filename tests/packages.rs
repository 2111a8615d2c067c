//! Packages over HTTP with the real sandbox: the built-in scientific stack, installing a real
//! pure-Python package and its dependency through pip, uploading a wheel built here, using
//! both from functions, refusing bad and native packages, uninstalling, and tenant isolation.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{start_relative, start_with, upload, wheel, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALLOW: &[&str] = &["--allow-package-installation", "true"];

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

async fn installed(app: &TestApp, token: &str) -> Vec<String> {
    let (s, v) = app
        .call_as(token, Method::GET, "/api/v1/packages?builtin=false", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    names(&v["packages"])
}

async fn error_code(app: &TestApp, body: Value) -> (StatusCode, String) {
    let (s, v) = app.post("/api/v1/packages", body).await;
    (s, v["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn builtins_are_listed_and_numpy_and_pandas_run() {
    let app = start_with(Backend::Sqlite, &[]).await;
    let (s, v) = app.get("/api/v1/packages").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v["packages"].as_array().expect("packages");
    for name in [
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "statsmodels",
        "matplotlib",
        "lxml",
    ] {
        let p = list
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(p["builtin"], true);
        assert!(p["version"]
            .as_str()
            .is_some_and(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())));
    }
    assert_eq!(v["installation_allowed"], false);
    let (s, np) = app.get("/api/v1/packages/NumPy").await;
    assert_eq!((s, np["name"].as_str()), (StatusCode::OK, Some("numpy")));

    app.create(
        "stats",
        "import numpy as np\nimport pandas as pd\nimport sys, platform\n\
         def stats(input):\n    df = pd.DataFrame({'x': input['xs']})\n    a = np.array(input['xs'], dtype=float)\n    \
         return {'mean': float(df['x'].mean()), 'std': round(float(a.std()), 6), 'numpy': np.__version__,\n            \
         'platform': sys.platform, 'machine': platform.machine(), 'python': '%d.%d' % sys.version_info[:2]}\n",
    )
    .await;
    let (s, out) = app.invoke("stats", json!({"xs": [1, 2, 3, 4]})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let r = &out["output"];
    assert_eq!(r["mean"], 2.5);
    assert_eq!(r["std"], 1.118034);
    let numpy = list.iter().find(|p| p["name"] == "numpy").unwrap();
    assert_eq!(r["numpy"], numpy["version"]);
    // The marker environment the resolver evaluates dependencies with.
    assert_eq!(
        (r["platform"].as_str(), r["python"].as_str()),
        (Some("wasi"), Some("3.15"))
    );
    assert_eq!(r["machine"], "wasm32");

    // Installing is off by default: every change is 403, reading still works.
    let (s, code) = error_code(&app, json!({"name": "python-slugify"})).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::FORBIDDEN, "package_installation_disabled")
    );
    let (s, _) = upload(&app, "a-1-py3-none-any.whl", &wheel("a", "1", &[], &[("a.py", "")]), "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.call(Method::DELETE, "/api/v1/packages/anything", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.stop().await;
}

/// The module a built-in distribution is imported as, where it is not the distribution's
/// own name.
fn import_name(dist: &str) -> String {
    match dist {
        "beautifulsoup4" => "bs4",
        "pillow" => "PIL",
        "python-dateutil" => "dateutil",
        "pyyaml" => "yaml",
        "scikit-learn" => "sklearn",
        "fonttools" => "fontTools",
        "tomli-w" => "tomli_w",
        "et-xmlfile" => "et_xmlfile",
        "typing-extensions" => "typing_extensions",
        "interface-meta" => "interface_meta",
        "more-itertools" => "more_itertools",
        "charset-normalizer" => "charset_normalizer",
        other => return other.replace('-', "_"),
    }
    .to_string()
}

/// Every distribution the runtime lists as built in imports with the default limits (a
/// 30 s timeout, 256 MiB, no fuel budget), each in its own function; statsmodels and
/// scikit-learn load their heavy submodules.
#[tokio::test]
async fn every_builtin_imports_with_default_limits() {
    let app = start_with(Backend::Sqlite, &[]).await;
    let (s, v) = app.get("/api/v1/packages?builtin=true").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dists = names(&v["packages"]);
    assert!(dists.len() >= 40, "{dists:?}");
    let deep = [
        ("scikit-learn", "sklearn.linear_model"),
        ("statsmodels", "statsmodels.api"),
        ("scipy", "scipy.stats"),
    ];
    let mut failures = Vec::new();
    let shared = &app;
    for chunk in dists.chunks(2) {
        let calls = chunk.iter().map(|dist| {
            let app = shared;
            let module = deep
                .iter()
                .find(|(d, _)| d == dist)
                .map_or_else(|| import_name(dist), |(_, m)| m.to_string());
            let name = format!("imp_{}", dist.replace(['-', '.'], "_"));
            let code = format!("import importlib\ndef {name}(input):\n    importlib.import_module({module:?})\n    return {module:?}\n");
            async move {
                app.create(&name, &code).await;
                let (s, v) = app.invoke(&name, json!({})).await;
                (dist.clone(), module, s, v)
            }
        });
        for (dist, module, s, v) in futures_util::future::join_all(calls).await {
            if s != StatusCode::OK || v["status"] != "succeeded" {
                failures.push(format!("{dist} (import {module}): {}", v["error"]));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // matplotlib draws with the Agg backend into PNG bytes in memory.
    app.create(
        "chart",
        "import io\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n\
         def chart(input):\n    fig, ax = plt.subplots()\n    ax.plot([1, 2, 3], [1, 4, 9], label='squares')\n    \
         ax.set_title('Squares')\n    ax.legend()\n    buf = io.BytesIO()\n    fig.savefig(buf, format='png')\n    \
         plt.close(fig)\n    data = buf.getvalue()\n    return {'magic': data[:8].hex(), 'size': len(data)}\n",
    )
    .await;
    let (s, v) = app.invoke("chart", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["output"]["magic"], "89504e470d0a1a0a", "{v}");
    assert!(v["output"]["size"].as_u64().unwrap_or(0) > 5_000, "{v}");
    app.stop().await;
}

async fn install_use_uninstall(app: TestApp) {
    let other = app.token_for("other");

    // A real package and its dependency, resolved and downloaded by pip.
    let (s, v) = app
        .post("/api/v1/packages", json!({"name": "python-slugify", "version": ">=8"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let got = names(&v["installed"]);
    assert!(
        got.contains(&"python-slugify".into()) && got.contains(&"text-unidecode".into()),
        "{v}"
    );
    let dep = v["installed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "text-unidecode")
        .unwrap();
    assert_eq!(dep["dependency_of"], "python-slugify");
    assert_eq!(dep["source"], "pip");
    assert_eq!(dep["sha256"].as_str().map(str::len), Some(64));
    let (s, job) = app
        .get(&format!("/api/v1/packages/installs/{}", v["job_id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (s, job["status"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{job}"
    );

    // Asking again is not an error: it is already there.
    let (s, again) = app.post("/api/v1/packages", json!({"name": "Python_Slugify"})).await;
    assert_eq!(
        (s, again["already_installed"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{again}"
    );

    // A private wheel built here, depending on what pip brought.
    let acme = wheel(
        "acme-tools",
        "1.0.0",
        &["text-unidecode>=1.0", "pytest; extra == 'test'"],
        &[(
            "acme_tools/__init__.py",
            "from text_unidecode import unidecode\ndef shout(s):\n    return unidecode(s).upper() + '!'\n",
        )],
    );
    let (s, v) = upload(&app, "acme_tools-1.0.0-py3-none-any.whl", &acme, "").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["missing_dependencies"], json!([]));
    assert_eq!(v["installed"][0]["requires"], json!(["text-unidecode"]));
    let (s, _) = upload(&app, "acme_tools-1.0.0-py3-none-any.whl", &acme, "").await;
    assert_eq!(s, StatusCode::CONFLICT);

    let code = "import slugify, acme_tools\ndef greet(input):\n    \
                return {'slug': slugify.slugify(input['t']), 'shout': acme_tools.shout(input['t']), \
                'where': slugify.__file__}\n";
    app.create("greet", code).await;
    let (s, out) = app.invoke("greet", json!({"t": "Héllo Wörld"})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["output"]["slug"], "hello-world");
    assert_eq!(out["output"]["shout"], "HELLO WORLD!");
    assert!(
        out["output"]["where"].as_str().unwrap().starts_with("/packages/"),
        "{out}"
    );
    // Warm again: same answer from the pooled instance.
    let (s, out) = app.invoke("greet", json!({"t": "a b"})).await;
    assert_eq!((s, out["output"]["slug"].as_str()), (StatusCode::OK, Some("a-b")));

    // The mount is read-only, and the package set is the tenant's own.
    app.create(
        "scribble",
        "def scribble(input):\n    try:\n        open('/packages/x.py', 'w')\n        return 'wrote'\n    \
         except OSError as e:\n        return type(e).__name__\n",
    )
    .await;
    let (_, out) = app.invoke("scribble", json!(null)).await;
    assert!(out["output"].as_str().is_some_and(|e| e.ends_with("Error")), "{out}");
    assert!(installed(&app, &other).await.is_empty());
    let (s, v) = app
        .call_as(&other, Method::POST, "/api/v1/functions", Some(json!({"name": "peek", "code":
            "def peek(input):\n    try:\n        import slugify\n        return 'imported'\n    except ImportError as e:\n        return type(e).__name__\n"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, out) = app
        .call_as(&other, Method::POST, "/api/v1/functions/peek/invoke", Some(json!(null)))
        .await;
    assert_eq!(out["output"], "ModuleNotFoundError", "{out}");
    let (s, _) = app
        .call_as(&other, Method::DELETE, "/api/v1/packages/python-slugify", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Uninstalling: refused while needed, then takes effect for the next call.
    let (s, v) = app.call(Method::DELETE, "/api/v1/packages/text-unidecode", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("python-slugify") && msg.contains("acme-tools"), "{msg}");
    let (s, v) = app.call(Method::DELETE, "/api/v1/packages/python-slugify", None).await;
    assert_eq!(
        (s, v["removed"]["name"].as_str()),
        (StatusCode::OK, Some("python-slugify")),
        "{v}"
    );
    let (s, out) = app.invoke("greet", json!({"t": "x"})).await;
    assert_eq!((s, out["status"].as_str()), (StatusCode::OK, Some("failed")), "{out}");
    assert_eq!(out["error"]["message"], "No module named 'slugify'", "{out}");
    let (s, _) = app
        .call(Method::DELETE, "/api/v1/packages/text-unidecode?force=true", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(installed(&app, &app.token).await, vec!["acme-tools".to_string()]);
    let (s, _) = app.call(Method::DELETE, "/api/v1/packages/acme-tools", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(installed(&app, &app.token).await.is_empty());
    app.stop().await;
}

/// With a data directory given relative to the working directory, as the default `./data`
/// is: pip runs elsewhere, so every path it gets must be absolute.
#[tokio::test]
async fn install_use_uninstall_sqlite_relative_data_dir() {
    install_use_uninstall(start_relative(Backend::Sqlite, ALLOW).await).await;
}

#[tokio::test]
async fn install_use_uninstall_postgres() {
    install_use_uninstall(start_with(Backend::Postgres, ALLOW).await).await;
}

#[tokio::test]
async fn bad_packages_are_refused_and_leave_nothing() {
    let app = start_with(
        Backend::Sqlite,
        &["--allow-package-installation", "true", "--package-max-bytes", "200000"],
    )
    .await;
    for (body, status, code) in [
        (
            json!({"name": "six; rm -rf /"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "../etc/passwd"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"name": "six", "version": "1 && curl"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (json!({"name": "numpy"}), StatusCode::CONFLICT, "builtin_package"),
        (json!({"name": "ujson"}), StatusCode::UNPROCESSABLE_ENTITY, "not_pure"),
        (
            json!({"name": "maestro-no-such-package-zq7"}),
            StatusCode::NOT_FOUND,
            "package_not_found",
        ),
        (
            json!({"name": "text-unidecode", "version": "9.9"}),
            StatusCode::NOT_FOUND,
            "version_not_found",
        ),
    ] {
        let (s, v) = app.post("/api/v1/packages", body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{body}: {v}"
        );
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        if code == "invalid_request" {
            let field = v["error"]["details"][0]["field"].as_str().unwrap_or_default();
            assert!(field == "name" || field == "version", "the field is named: {v}");
        }
    }
    let (_, v) = app.post("/api/v1/packages", json!({"name": "ujson"})).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("WebAssembly"), "{v}");

    let ok = [("m/__init__.py", "")];
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "evil-1-py3-none-any.whl",
            wheel("evil", "1", &[], &[("../escape.py", "x = 1")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "evil-1-py3-none-any.whl",
            wheel("evil", "1", &[], &[("/etc/cron.d/x", "")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "fast-1-cp311-cp311-manylinux_2_28_x86_64.whl",
            wheel("fast", "1", &[], &ok),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_pure",
        ),
        (
            "sneaky-1-py3-none-any.whl",
            wheel(
                "sneaky",
                "1",
                &[],
                &[("sneaky/_speed.cpython-311-x86_64-linux-gnu.so", "\x7fELF")],
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_pure",
        ),
        (
            "broken-1-py3-none-any.whl",
            b"PK\x03\x04 this is not a zip".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "other-1-py3-none-any.whl",
            wheel("notother", "1", &[], &ok),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "numpy-9-py3-none-any.whl",
            wheel("numpy", "9", &[], &ok),
            StatusCode::CONFLICT,
            "builtin_package",
        ),
        (
            "twice-1-py3-none-any.whl",
            wheel("twice", "1", &[], &[("twice/a", ""), ("twice/a/b.py", "")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "liar-2-py3-none-any.whl",
            wheel("liar", "1", &[], &ok).to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wheel",
        ),
        (
            "big-1-py3-none-any.whl",
            wheel("big", "1", &[], &[("big/data.py", &"#".repeat(300_000))]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (name, bytes, status, code) in cases {
        let (s, v) = upload(&app, name, &bytes, "").await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{name}: {v}"
        );
    }
    // Not multipart at all: a JSON error, not the framework's text.
    let resp = app
        .client
        .post(format!("{}/api/v1/packages/upload", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    // A wheel that unpacks far past its size (a zip bomb) is cut off while it is read.
    let bomb = {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("bomb/zeros.py", opts).unwrap();
        z.write_all(&vec![b'0'; 5 << 20]).unwrap();
        z.finish().unwrap();
        buf.into_inner()
    };
    let (s, v) = upload(&app, "bomb-1-py3-none-any.whl", &bomb, "").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("package_too_large")),
        "{v}"
    );
    assert!(installed(&app, &app.token).await.is_empty());

    // A long install answers 202 at once and can be followed to its end.
    let resp = app
        .client
        .post(format!("{}/api/v1/packages?wait=0", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"name": "ujson"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    // One install at a time per tenant.
    let (s, v) = app.post("/api/v1/packages", json!({"name": "text-unidecode"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("install_in_progress")),
        "{v}"
    );
    let mut job = Value::Null;
    for _ in 0..300 {
        job = app.get(&location).await.1;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "not_pure");
    let (_, list) = app.get("/api/v1/packages/installs").await;
    assert!(list["installs"].as_array().is_some_and(|a| a.len() >= 5), "{list}");
    assert!(installed(&app, &app.token).await.is_empty());
    app.stop().await;
}
