//! The dashboard (`/dashboard`) in a real browser: runs tests/browser/dashboard.mjs (node,
//! playwright-core, Debian's headless chromium) against the live stack. It logs in, mints and
//! revokes keys, watches usage change, brings a provider key and finds its access-log row,
//! toggles the opt-in and deletes an account, checking on every page that nothing but the
//! gateway's own origin was asked, that the CSP header came with the page and that the console
//! stayed clean; then it checks the session cookie, CSRF, revocation and owner-only rules over
//! plain HTTP. Screenshots land in target/screenshots/.

use std::process::Stdio;
use std::time::Duration;

use integration_tests::{root, stack_alone, ADMIN_TOKEN};

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    // Alone: a browser on this 2-core machine would skew the timing tests running beside it.
    let s = &stack_alone();
    let script = root().join("tests/browser/dashboard.mjs");
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&s.base)
        .arg(ADMIN_TOKEN)
        .arg(&s.mock)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs it with the npm packages)");
    let out = tokio::time::timeout(Duration::from_secs(420), child.wait_with_output())
        .await
        .expect("the dashboard's browser tests finish within 420 s")
        .expect("node output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- tests/browser/dashboard.mjs stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "the dashboard's browser tests failed ({}); their output is above",
        out.status
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
