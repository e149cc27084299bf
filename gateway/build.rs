//! Names the commit the binary is built from, for `jingle-gateway --version`: the
//! `JINGLE_GATEWAY_COMMIT` variable if set (a packager building from a tarball), else `git
//! rev-parse`, else "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=JINGLE_GATEWAY_COMMIT");
    let commit = std::env::var("JINGLE_GATEWAY_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=JINGLE_GATEWAY_COMMIT={commit}");
    // Built again when HEAD moves: a new commit, a checkout.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "refs/heads", "packed-refs"] {
            let path = Path::new(&git_dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
