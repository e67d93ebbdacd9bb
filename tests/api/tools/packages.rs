//! Sharing extensions through the real binary: `keygen`, `package` (reproducible, signed),
//! `verify`, `publish` into a registry directory (and the same registry over http and
//! https), `search`, `info --remote`, `install` with dependency resolution into a temporary
//! copy of the project's layout, refusals (tampered, unsigned, untrusted, conflicting) that
//! write nothing, `uninstall`; and interoperability with the `minisign` tool when it is
//! installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sha2::Digest;

use crate::helpers::TempDir;
use crate::server::cli::{run, solobase, stderr};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A workspace for one test: a project (the real root Cargo.toml), a config file, sources.
struct Bench {
    tmp: TempDir,
}

impl Bench {
    fn new() -> Self {
        let tmp = TempDir::new();
        let project = tmp.0.join("project");
        std::fs::create_dir_all(project.join("config")).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
            project.join("Cargo.toml"),
        )
        .unwrap();
        Self { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.0.join(rel)
    }

    fn project(&self) -> PathBuf {
        self.path("project")
    }

    fn config(&self) -> PathBuf {
        self.path("project/config/solobase.toml")
    }

    /// Runs `solobase --config <project config> extensions ARGS` in the project.
    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = solobase(&self.project());
        cmd.arg("--config")
            .arg(self.config())
            .arg("extensions")
            .args(args);
        run(cmd, Duration::from_secs(30))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs ARGS expecting a refusal (exit 2) whose message contains `expect`.
    fn refused(&self, args: &[&str], expect: &str) {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(expect),
            "{args:?}: {expect:?} in {}",
            stderr(&out)
        );
    }

    /// Makes a signing key `name` and returns its public key.
    fn keygen(&self, name: &str) -> String {
        let key = self.path(name);
        let out = self.ok(&["keygen", "--output", key.to_str().unwrap()]);
        let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
        let public = public.lines().nth(1).unwrap().to_owned();
        assert!(out.contains(&public), "{out}");
        public
    }

    fn trust(&self, keys: &[&str], registry: &str) {
        let list: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        std::fs::write(
            self.config(),
            format!(
                "[extensions]\ntrusted_keys = [{}]\nregistry = {registry:?}\n",
                list.join(", ")
            ),
        )
        .unwrap();
    }

    /// An extension's source at `src/<name>` with `version` and `deps` ([dependencies] body).
    fn source(&self, name: &str, version: &str, deps: &str) -> PathBuf {
        let dir = self.path(&format!("src/{name}"));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("extension.toml"),
            format!(
                "[extension]\nformat = 1\nname = \"{name}\"\nversion = \"{version}\"\n\
                 description = \"The {name} extension\"\nlicense = \"MIT\"\ntier = \"community\"\n\
                 host = \"^0.1\"\npermissions = []\n\n[dependencies]\n{deps}"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"solobase-ext-{name}\"\nversion = \"{version}\"\n\
                 edition = \"2024\"\n\n[dependencies]\nsolobase-sdk.workspace = true\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("src/lib.rs"),
            format!("//! {name} {version}\npub const VERSION: &str = \"{version}\";\n"),
        )
        .unwrap();
        // Left out of packages: dotfiles and target/.
        std::fs::write(dir.join(".secret"), "not shipped").unwrap();
        std::fs::create_dir_all(dir.join("target")).unwrap();
        std::fs::write(dir.join("target/junk"), "not shipped").unwrap();
        dir
    }

    /// Packages `src/<name>` into `out/` signed with `key`; returns the package's path and the
    /// SHA-256 printed.
    fn package(&self, name: &str, key: &str, out: &str) -> (PathBuf, String) {
        let text = self.ok(&[
            "package",
            self.path(&format!("src/{name}")).to_str().unwrap(),
            "--key",
            self.path(key).to_str().unwrap(),
            "--output",
            self.path(out).to_str().unwrap(),
        ]);
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("package:"))
            .unwrap()
            .trim();
        let sha = text
            .lines()
            .find_map(|l| l.strip_prefix("sha256:"))
            .unwrap()
            .trim();
        (PathBuf::from(path), sha.to_owned())
    }

    fn cargo_toml(&self) -> String {
        std::fs::read_to_string(self.project().join("Cargo.toml")).unwrap()
    }
}

fn sha256(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds a registry of base 0.1.0/0.2.0 and greeter 0.1.0 (needs base ^0.1) / 0.2.0 (needs
/// base ^0.2); returns the registry's folder.
fn registry(bench: &Bench, key: &str) -> PathBuf {
    let registry = bench.path("registry");
    for (name, version, deps) in [
        ("base", "0.1.0", ""),
        ("base", "0.2.0", ""),
        ("greeter", "0.1.0", "base = \"^0.1\"\n"),
        ("greeter", "0.2.0", "base = \"^0.2\"\n"),
    ] {
        bench.source(name, version, deps);
        let (file, _) = bench.package(name, key, "dist");
        let out = bench.ok(&[
            "publish",
            file.to_str().unwrap(),
            "--registry",
            registry.to_str().unwrap(),
        ]);
        assert!(
            out.contains(&format!("published {name} {version}")),
            "{out}"
        );
    }
    registry
}

#[test]
fn packages_are_reproducible_signed_and_verified() {
    let bench = Bench::new();
    let public = bench.keygen("me.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(bench.path("me.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    }
    // keygen does not overwrite a key.
    bench.refused(
        &["keygen", "--output", bench.path("me.key").to_str().unwrap()],
        "already exists",
    );
    bench.trust(&[&public], bench.path("registry").to_str().unwrap());
    bench.source("base", "0.1.0", "");
    let (first, sha) = bench.package("base", "me.key", "one");
    let (second, sha_again) = bench.package("base", "me.key", "two");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    assert_eq!(sha, sha_again);
    assert_eq!(sha, sha256(&first), "the SHA-256 printed is the file's");
    assert_eq!(first.file_name().unwrap(), "base-0.1.0.tar.gz");

    // What is inside: the crate, without dotfiles or target/, plus the metadata.
    let tar = Command::new("tar")
        .arg("tzvf")
        .arg(&first)
        .output()
        .unwrap();
    let listing = stdout(&tar);
    for present in [
        "base/extension.toml",
        "base/src/lib.rs",
        "base/solobase-package.json",
    ] {
        assert!(listing.contains(present), "{present} in {listing}");
    }
    assert!(
        !listing.contains(".secret") && !listing.contains("target/"),
        "{listing}"
    );
    assert!(listing.contains("1970-01-01"), "fixed mtimes: {listing}");

    let out = bench.ok(&["verify", first.to_str().unwrap()]);
    assert!(out.contains("signature OK") && out.contains(&sha), "{out}");
    assert!(
        out.contains("trusted comment: solobase package base-0.1.0.tar.gz"),
        "{out}"
    );
}

#[test]
fn tampered_unsigned_and_untrusted_packages_are_refused_and_nothing_is_written() {
    let bench = Bench::new();
    let public = bench.keygen("me.key");
    let stranger = bench.keygen("stranger.key");
    bench.trust(&[&public], bench.path("registry").to_str().unwrap());
    bench.source("base", "0.1.0", "");
    let (good, _) = bench.package("base", "me.key", "dist");
    let original = bench.cargo_toml();
    let nothing_written = |bench: &Bench| {
        assert_eq!(bench.cargo_toml(), original);
        assert!(!bench.project().join("extensions").exists());
    };

    // One byte changed.
    let tampered = bench.path("tampered/base-0.1.0.tar.gz");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    std::fs::copy(
        format!("{}.minisig", good.display()),
        format!("{}.minisig", tampered.display()),
    )
    .unwrap();
    bench.refused(
        &["install", tampered.to_str().unwrap()],
        "changed after it was signed",
    );
    bench.refused(
        &["verify", tampered.to_str().unwrap()],
        "changed after it was signed",
    );
    nothing_written(&bench);

    // No signature.
    let unsigned = bench.path("unsigned/base-0.1.0.tar.gz");
    std::fs::create_dir_all(unsigned.parent().unwrap()).unwrap();
    std::fs::copy(&good, &unsigned).unwrap();
    bench.refused(&["install", unsigned.to_str().unwrap()], "is not signed");
    nothing_written(&bench);

    // Signed by a key not trusted.
    let (theirs, _) = bench.package("base", "stranger.key", "theirs");
    bench.refused(
        &["install", theirs.to_str().unwrap()],
        "which is not in [extensions] trusted_keys",
    );
    nothing_written(&bench);

    // Trusting no key at all is a clear configuration problem.
    bench.trust(&[], bench.path("registry").to_str().unwrap());
    bench.refused(
        &["install", good.to_str().unwrap()],
        "no trusted keys are configured",
    );
    nothing_written(&bench);

    // Made for another Solobase.
    let future = bench.source("future", "1.0.0", "");
    let manifest = std::fs::read_to_string(future.join("extension.toml")).unwrap();
    std::fs::write(
        future.join("extension.toml"),
        manifest.replace("host = \"^0.1\"", "host = \"^9\""),
    )
    .unwrap();
    let out = bench.cli(&["validate", future.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "validate flags the host too");
    bench.refused(
        &["install", future.to_str().unwrap()],
        "future 1.0.0 runs on Solobase ^9, and this project is Solobase 0.1.0",
    );
    nothing_written(&bench);

    // The same package, trusted: installed, and the feature added.
    bench.trust(
        &[&public, &stranger],
        bench.path("registry").to_str().unwrap(),
    );
    let out = bench.ok(&["install", good.to_str().unwrap()]);
    assert!(
        out.contains("cargo build --release --features base"),
        "{out}"
    );
    let installed = bench.project().join("extensions/community/base");
    assert!(installed.join("src/lib.rs").is_file());
    assert!(!installed.join(".secret").exists());
    assert!(
        bench
            .cargo_toml()
            .contains("base = [\"dep:solobase-ext-base\"]")
    );
    // Installing it again is refused.
    bench.refused(&["install", good.to_str().unwrap()], "already installed");
    // Uninstall restores Cargo.toml's content.
    bench.ok(&["uninstall", "base"]);
    assert!(!installed.exists());
    let before: toml::Table = original.parse().unwrap();
    let after: toml::Table = bench.cargo_toml().parse().unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_registry_resolves_the_highest_compatible_versions_and_installs_them() {
    let bench = Bench::new();
    let public = bench.keygen("me.key");
    bench.trust(&[&public], bench.path("registry").to_str().unwrap());
    let registry = registry(&bench, "me.key");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["extensions"]["greeter"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["extensions"]["greeter"][1]["dependencies"]["base"],
        "^0.2"
    );

    let found = bench.ok(&["search", "greet"]);
    assert!(
        found.contains("greeter 0.2.0 — The greeter extension"),
        "{found}"
    );
    assert!(!found.contains("base"), "{found}");
    let info = bench.ok(&["info", "greeter", "--remote"]);
    assert!(info.contains("0.2.0") && info.contains("0.1.0"), "{info}");
    assert!(info.contains("dependencies: base ^0.2"), "{info}");
    bench.refused(&["info", "nope", "--remote"], "not in the registry");

    // Newest greeter, and the base it needs.
    let out = bench.ok(&["install", "greeter"]);
    assert!(out.contains("installed base 0.2.0"), "{out}");
    assert!(out.contains("installed greeter 0.2.0"), "{out}");
    assert!(out.contains("--features base,greeter"), "{out}");
    let lib = bench
        .project()
        .join("extensions/community/greeter/src/lib.rs");
    assert!(std::fs::read_to_string(lib).unwrap().contains("0.2.0"));
    let cargo = bench.cargo_toml();
    for line in [
        "greeter = [\"dep:solobase-ext-greeter\"]",
        "solobase-ext-base = { path = \"extensions/community/base\", optional = true }",
        "    \"extensions/community/greeter\",",
    ] {
        assert!(cargo.contains(line), "{line} in {cargo}");
    }

    // base is needed by greeter.
    bench.refused(
        &["uninstall", "base"],
        "greeter (extensions/community/greeter needs base ^0.2)",
    );
    bench.ok(&["uninstall", "greeter"]);
    bench.ok(&["uninstall", "base"]);

    // With base 0.1.0 installed: greeter 0.2.0 conflicts, the newest greeter that fits is 0.1.0.
    bench.ok(&["install", "base@0.1.0"]);
    bench.refused(
        &["install", "greeter@0.2.0"],
        "0.2.0 needs base ^0.2, but base 0.1.0 is installed",
    );
    let out = bench.ok(&["install", "greeter"]);
    assert!(out.contains("installed greeter 0.1.0"), "{out}");
    assert!(!out.contains("installed base"), "{out}");
    bench.refused(
        &["install", "nothing-like-it"],
        "neither installed nor in the registry",
    );

    // A package swapped in the registry (even one validly signed) does not match the index.
    bench.ok(&["uninstall", "greeter"]);
    bench.ok(&["uninstall", "base"]);
    for suffix in ["", ".minisig"] {
        std::fs::copy(
            registry.join(format!("greeter-0.1.0.tar.gz{suffix}")),
            registry.join(format!("greeter-0.2.0.tar.gz{suffix}")),
        )
        .unwrap();
    }
    let before = bench.cargo_toml();
    bench.refused(
        &["install", "greeter"],
        "differs from the registry's index: refused",
    );
    assert_eq!(bench.cargo_toml(), before);
    assert!(!bench.project().join("extensions/community/base").exists());

    // A source folder installs as local, unsigned code.
    let out = bench.ok(&["install", bench.path("src/base").to_str().unwrap()]);
    assert!(out.contains("(local source, unsigned)"), "{out}");
    assert!(
        bench
            .project()
            .join("extensions/community/base/src/lib.rs")
            .is_file()
    );
}

#[test]
fn a_registry_served_over_http_works_like_a_directory() {
    let bench = Bench::new();
    let public = bench.keygen("me.key");
    bench.trust(&[&public], "unused");
    let dir = registry(&bench, "me.key");
    let server = StaticServer::start(dir);
    let url = format!("http://{}", server.address);
    let found = bench.ok(&["search", "", "--registry", &url]);
    assert!(
        found.contains("base 0.2.0") && found.contains("greeter 0.2.0"),
        "{found}"
    );
    let out = bench.ok(&["install", "greeter@0.1.0", "--registry", &url]);
    assert!(
        out.contains("installed base 0.1.0") && out.contains("installed greeter 0.1.0"),
        "{out}"
    );
    // https registries are fetched (here: a host that does not exist, which is a runtime
    // failure, exit 1, saying which URL and why).
    let out = bench.cli(&["search", "x", "--registry", "https://example.invalid"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("cannot fetch https://example.invalid/index.json: error sending request"),
        "{}",
        stderr(&out)
    );
}

/// A registry served over https with a certificate from a CA the system does not know:
/// refused, naming the URL and the certificate's fault, until `SOLOBASE_OUTBOUND_CA_FILE`
/// names that CA; then it works like any registry.
#[test]
fn a_registry_served_over_https_is_verified_against_the_configured_ca() {
    let bench = Bench::new();
    let public = bench.keygen("me.key");
    bench.trust(&[&public], "unused");
    let dir = registry(&bench, "me.key");
    let ca = crate::server::tls::Ca::new();
    let server = StaticServer::start_https(dir, &ca);
    let url = format!("https://localhost:{}", server.address.port());

    let out = bench.cli(&["search", "", "--registry", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot fetch {url}/index.json"))
            && stderr(&out).contains("UnknownIssuer")
            && stderr(&out).contains("name that CA's PEM file in SOLOBASE_OUTBOUND_CA_FILE"),
        "{}",
        stderr(&out)
    );

    let ca_file = bench.path("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let with_ca = |args: &[&str]| {
        let mut cmd = solobase(&bench.project());
        cmd.env("SOLOBASE_OUTBOUND_CA_FILE", &ca_file)
            .arg("--config")
            .arg(bench.config())
            .arg("extensions")
            .args(args);
        run(cmd, Duration::from_secs(30))
    };
    let found = with_ca(&["search", "", "--registry", &url]);
    assert!(found.status.success(), "{}", stderr(&found));
    assert!(
        stdout(&found).contains("base 0.2.0") && stdout(&found).contains("greeter 0.2.0"),
        "{}",
        stdout(&found)
    );
    let out = with_ca(&["install", "greeter@0.2.0", "--registry", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("installed base 0.2.0")
            && stdout(&out).contains("installed greeter 0.2.0"),
        "{}",
        stdout(&out)
    );
}

/// A minimal static file server on 127.0.0.1 for the registry tests (GET only, one thread
/// per connection), over http or, given a rustls configuration, https; stops when dropped.
struct StaticServer {
    address: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StaticServer {
    fn start(dir: PathBuf) -> Self {
        Self::start_with(dir, None)
    }

    /// Serves `dir` over https with a certificate for `localhost` signed by `ca`.
    fn start_https(dir: PathBuf, ca: &crate::server::tls::Ca) -> Self {
        Self::start_with(dir, Some(ca.server_config()))
    }

    fn start_with(
        dir: PathBuf,
        tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let dir = dir.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve_file(stream, &dir),
                    Some(config) => {
                        // A client refusing the certificate ends the handshake: nothing to
                        // serve then.
                        let Ok(conn) = tokio_rustls::rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve_file(tokio_rustls::rustls::StreamOwned::new(conn, stream), &dir);
                    }
                });
            }
        });
        Self { address, stop }
    }
}

/// Answers one GET on `stream` with the file it names under `dir` (or 404).
fn serve_file(mut stream: impl std::io::Read + std::io::Write, dir: &Path) {
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    drop(reader);
    let _ = match std::fs::read(dir.join(&path)) {
        Ok(body) if !path.contains("..") => write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .and_then(|()| stream.write_all(&body)),
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
    }
    .and_then(|()| stream.flush());
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Signatures interoperate with the `minisign` tool both ways, and its unencrypted keys sign
/// packages. Skipped, saying so, where minisign is not installed (CI installs it).
#[test]
fn signatures_interoperate_with_minisign() {
    if Command::new("minisign").arg("-v").output().is_err() {
        eprintln!(
            "SKIPPED signatures_interoperate_with_minisign: the minisign tool is not installed (apt-get install minisign)"
        );
        return;
    }
    let bench = Bench::new();
    // A key made by minisign (unencrypted: -W).
    let minisign_key = bench.path("mini.key");
    let minisign_pub = bench.path("mini.pub");
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&minisign_pub)
        .arg("-s")
        .arg(&minisign_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let their_public = std::fs::read_to_string(&minisign_pub).unwrap();
    let their_public = their_public.lines().nth(1).unwrap().to_owned();
    let ours = bench.keygen("ours.key");
    bench.trust(&[&ours, &their_public], "unused");
    bench.source("base", "0.1.0", "");

    // Signed by Solobase with its own key → minisign verifies it (trusted comment included).
    let (package, _) = bench.package("base", "ours.key", "ours");
    let out = Command::new("minisign")
        .args(["-V", "-p"])
        .arg(bench.path("ours.key.pub"))
        .arg("-m")
        .arg(&package)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -V: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("solobase package base-0.1.0.tar.gz"),
        "{}",
        stdout(&out)
    );

    // Signed by Solobase with minisign's key file → minisign verifies it with its public key.
    let (package, _) = bench.package("base", "mini.key", "with-their-key");
    let out = Command::new("minisign")
        .args(["-V", "-p"])
        .arg(&minisign_pub)
        .arg("-m")
        .arg(&package)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -V: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // Re-signed by minisign itself (prehashed, and legacy) → Solobase verifies and installs it.
    for legacy in [false, true] {
        let mut sign = Command::new("minisign");
        sign.arg("-S");
        if legacy {
            sign.arg("-l");
        }
        let out = sign
            .arg("-s")
            .arg(&minisign_key)
            .arg("-m")
            .arg(&package)
            .args(["-t", "signed by minisign"])
            .output()
            .unwrap();
        assert!(out.status.success(), "minisign -S: {}", stderr(&out));
        let checked = bench.ok(&["verify", package.to_str().unwrap()]);
        assert!(
            checked.contains("trusted comment: signed by minisign"),
            "{checked}"
        );
    }
    bench.ok(&["install", package.to_str().unwrap()]);
    assert!(
        bench
            .project()
            .join("extensions/community/base/extension.toml")
            .is_file()
    );
}

/// `validate` checks a manifest against the published JSON Schema, naming the key and line.
#[test]
fn validate_checks_the_manifest_against_its_published_schema() {
    let bench = Bench::new();
    let dir = bench.source("base", "0.1.0", "");
    let manifest = std::fs::read_to_string(dir.join("extension.toml")).unwrap();
    std::fs::write(
        dir.join("extension.toml"),
        manifest
            .replace("format = 1", "format = 2")
            .replace("tier = \"community\"", "tier = \"gold\"\nhomepage = \"x\""),
    )
    .unwrap();
    let out = bench.cli(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    for expected in [
        "extension.toml:2: key `extension.format`: 2 is greater than the maximum of 1",
        "extension.toml:7: key `extension.tier`: \"gold\" is not one of",
        "'homepage' was unexpected",
        "(see extensions/extension.schema.json)",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    std::fs::write(dir.join("extension.toml"), &manifest).unwrap();
    let out = bench.cli(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
