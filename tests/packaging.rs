//! The container image and the first-run documentation, checked by reading them (no Docker
//! engine runs here; the binary they run is tested everywhere else): the data directory a
//! volume is mounted on belongs to the runtime user, the build context leaves out `target/`
//! and `data/`, dependencies build in a layer of their own, and the README's commands keep
//! secrets across restarts and say how long a first run takes and where the port changes.

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dockerfile_and_context() {
    let ignore = read(".dockerignore");
    for entry in ["target/", "data/"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }
    let docker = read("Dockerfile");
    let at = |needle: &str| {
        docker
            .find(needle)
            .unwrap_or_else(|| panic!("Dockerfile lacks {needle:?}"))
    };
    // Dependencies are built from the manifests before the sources are copied in.
    let deps = at("echo 'fn main() {}' > src/main.rs");
    assert!(at("COPY Cargo.toml Cargo.lock ./") < deps && deps < at("COPY src ./src"));
    // The data directory exists, belongs to the runtime user, and is a volume.
    let chown = at("chown -R maestro /opt/maestro/runtime /var/lib/maestro");
    assert!(at("/var/lib/maestro/data") < chown && chown < at("USER maestro"));
    assert!(docker.contains("VOLUME /var/lib/maestro/data"));
    assert!(docker.contains("MAESTRO_DATA_DIR=/var/lib/maestro/data"));
    // Every variable the image sets is one the server reads.
    let config = read("src/config.rs");
    for var in [
        "MAESTRO_BIND",
        "MAESTRO_DATA_DIR",
        "MAESTRO_RUNTIME_DIR",
        "FUNCTION_TIMEOUT",
        "DEBUG",
        "ALLOW_PACKAGE_INSTALLATION",
    ] {
        assert!(
            config.contains(&format!("env = \"{var}\"")),
            "the image sets {var}, which the server does not read"
        );
    }
}

#[test]
fn readme_first_run() {
    let readme = read("README.md");
    let docker = &readme[readme.find("## Docker").expect("a Docker section")..];
    for needle in [
        "-v maestro-data:/var/lib/maestro/data",
        "SECRETS_KEY",
        "docker exec maestro maestro token",
    ] {
        assert!(docker.contains(needle), "the README's docker run lacks {needle}");
    }
    let first = &readme[readme.find("## The two commands").expect("the two commands")
        ..readme.find("## Walk-through").expect("walk-through")];
    assert!(first.contains("cargo run --release -- serve") && first.contains("scripts/test"));
    assert!(first.contains("minutes"), "how long a first run takes");
    assert!(first.contains("MAESTRO_BIND"), "where the port changes");
    let ci = read(".ci/run");
    assert!(ci.contains("scripts/test"), "CI runs the README's test command");
}
