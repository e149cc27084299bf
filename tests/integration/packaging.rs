//! What a packager and a new admin rely on: the declared `rust-version` is true of every
//! dependency the lockfile pins, the licence text ships, `--version` names the commit.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `1.89` or `1.89.0` as a comparable triple.
fn version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The value of `key = "..."` on a line of its own in a manifest.
fn manifest_value(manifest: &str, key: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// Every crate the lockfile pins whose source is in cargo's registry cache (all that this
/// machine built are) declares a `rust-version` no newer than the workspace's: a lockfile
/// update that needs a newer Rust fails here, not on a user's machine.
#[test]
fn rust_version_covers_every_locked_dependency() {
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let declared = manifest_value(&workspace, "rust-version")
        .and_then(|v| version(&v))
        .expect("the workspace declares rust-version");
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).expect("Cargo.lock");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registries: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .expect("cargo's registry cache")
        .filter_map(|entry| Some(entry.ok()?.path()))
        .collect();
    let (mut checked, mut too_new) = (0, Vec::new());
    for package in lock.split("[[package]]").skip(1) {
        let (Some(name), Some(locked)) = (
            manifest_value(package, "name"),
            manifest_value(package, "version"),
        ) else {
            continue;
        };
        let Some(manifest) = registries
            .iter()
            .map(|registry| registry.join(format!("{name}-{locked}/Cargo.toml")))
            .find_map(|path| std::fs::read_to_string(path).ok())
        else {
            continue;
        };
        checked += 1;
        let needs = manifest_value(&manifest, "rust-version").and_then(|v| version(&v));
        if let Some(needs) = needs.filter(|needs| *needs > declared) {
            too_new.push(format!("{name} {locked} needs {needs:?}"));
        }
    }
    assert!(
        checked > 100,
        "only {checked} locked crates found in the registry cache"
    );
    assert!(
        too_new.is_empty(),
        "rust-version {declared:?} in Cargo.toml is too old: {too_new:?}"
    );
}

/// The licence Cargo.toml names ships in full.
#[test]
fn the_licence_text_is_the_agpl() {
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert_eq!(
        manifest_value(&workspace, "license").as_deref(),
        Some("AGPL-3.0-or-later")
    );
    let licence = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(licence.starts_with("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007"));
    assert!(licence
        .contains("13. Remote Network Interaction; Use with the GNU General Public License."));
    assert!(licence.contains("END OF TERMS AND CONDITIONS"));
}

/// `--version` names the version and the commit built (the checkout's HEAD, when built from
/// one).
#[test]
fn version_names_the_commit() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
        .arg("--version")
        .output()
        .expect("run --version");
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(output.status.success());
    assert!(
        printed.starts_with(&format!(
            "jingle-gateway {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{printed}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    if let Some(head) = head {
        assert!(
            printed.ends_with(&format!("(commit {head})")),
            "{printed} is not {head}"
        );
    }
}

/// Runs `program` with `args` in `dir`; its stdout, or a panic naming what failed.
fn run(program: &str, args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> String {
    let mut command = std::process::Command::new(program);
    command.args(args).current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/install-deps.sh installs it)"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Debian package `cargo deb` builds from the metadata in gateway/Cargo.toml holds the
/// binary where the unit runs it, the unit, the example config and prompts as conffiles in
/// /etc/jingle-gateway, README.Debian, the licence and the examples; extracted into a
/// temporary root (not installed), its config passes its own binary's `check-config`. The
/// package is made from this build's binary (`--no-build`: a release build would take minutes
/// here); a packager runs `cargo deb -p jingle-gateway`.
#[test]
fn the_debian_package_has_what_an_admin_needs() {
    let dir = crate::support::TempDir::new("deb");
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).expect("target dir");
    std::fs::copy(
        env!("CARGO_BIN_EXE_jingle-gateway"),
        target.join("release/jingle-gateway"),
    )
    .expect("binary");
    let deb = dir.path().join("jingle-gateway.deb");
    let deb_arg = deb.to_str().expect("path");
    run(
        "cargo",
        &[
            "deb",
            "-p",
            "jingle-gateway",
            "--no-build",
            "--no-strip",
            "--fast",
            "-o",
            deb_arg,
        ],
        &repo(),
        &[("CARGO_TARGET_DIR", &target)],
    );
    let root = dir.path().join("root");
    let control = dir.path().join("control");
    let (root_arg, control_arg) = (
        root.to_str().expect("path"),
        control.to_str().expect("path"),
    );
    run("dpkg-deb", &["-x", deb_arg, root_arg], dir.path(), &[]);
    run("dpkg-deb", &["-e", deb_arg, control_arg], dir.path(), &[]);

    for file in [
        "usr/bin/jingle-gateway",
        "lib/systemd/system/jingle-gateway.service",
        "etc/jingle-gateway/gateway.toml",
        "etc/jingle-gateway/prompts/welcome.opus",
        "etc/jingle-gateway/prompts/system/vm-greeting.opus",
        "usr/share/doc/jingle-gateway/README.Debian",
        "usr/share/doc/jingle-gateway/copyright",
        "usr/share/doc/jingle-gateway/CHANGELOG.md",
        "usr/share/doc/jingle-gateway/examples/prosody/jingle-gateway.cfg.lua",
        "usr/share/doc/jingle-gateway/examples/ejabberd/jingle-gateway.yml",
        "usr/share/doc/jingle-gateway/examples/monitoring/grafana-dashboard.json",
    ] {
        assert!(root.join(file).is_file(), "{file} is not in the package");
    }
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert!(conffiles
        .lines()
        .any(|l| l == "/etc/jingle-gateway/gateway.toml"));
    let fields = std::fs::read_to_string(control.join("control")).expect("control");
    assert!(fields.contains("Package: jingle-gateway\n"), "{fields}");
    assert!(fields.contains("Depends: "), "{fields}");
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/jingle-gateway/copyright"))
        .expect("copyright");
    assert!(copyright.contains("GNU AFFERO GENERAL PUBLIC LICENSE"));
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/jingle-gateway.service"))
        .expect("unit");
    assert!(unit
        .contains("ExecStart=/usr/bin/jingle-gateway --config /etc/jingle-gateway/gateway.toml"));

    let binary = root.join("usr/bin/jingle-gateway");
    let config = root.join("etc/jingle-gateway/gateway.toml");
    let checked = run(
        binary.to_str().expect("path"),
        &["check-config", config.to_str().expect("path")],
        dir.path(),
        &[],
    );
    assert!(checked.contains(": valid ("), "{checked}");
}
