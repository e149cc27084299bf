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
