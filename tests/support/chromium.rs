//! Headless Chromium for the HTML report's tests and render-time bench: the DOM after the
//! page's scripts ran, its console messages, and screenshots. Each run has a time limit and
//! its whole process group is killed when it hangs.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Names a browser goes by, tried in order on `PATH` (`OMNI_METRICS_CHROMIUM` wins).
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// How to get one, said when there is none.
pub(crate) const INSTALL_HINT: &str = "headless Chromium is needed: `apt-get install -y chromium` \
     (Debian; CI's .ci/run installs it), or point OMNI_METRICS_CHROMIUM at a Chromium or Chrome \
     binary; OMNI_METRICS_SKIP_BROWSER=1 skips the browser tests explicitly";

/// The browser to run, if any.
pub(crate) fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OMNI_METRICS_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| NAMES.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// What one browser run left.
#[derive(Debug)]
pub(crate) struct Run {
    /// Standard output (the DOM, for `--dump-dom`).
    pub(crate) stdout: String,
    /// Console messages of the page (`console.*` calls and uncaught errors), one per line.
    pub(crate) console: Vec<String>,
    /// How long the browser ran.
    pub(crate) elapsed: Duration,
}

/// Runs the browser headless on `url` with `args` (`--dump-dom`, `--screenshot=...`), at
/// most `limit`, in a fresh profile of its own (runs can go in parallel).
pub(crate) fn run(
    browser: &Path,
    url: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Run, String> {
    let profile = std::env::temp_dir().join(format!(
        "omni-chromium-{}-{}",
        std::process::id(),
        PROFILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut command = Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--timeout={}", limit.as_millis()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}; {INSTALL_HINT}", browser.display()))?;
    // Read both pipes on threads, so a chatty browser never blocks on a full pipe.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = out_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = err_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let hard_limit = limit + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > hard_limit => {
                kill_group(&mut child);
                break Err(format!(
                    "{} did not finish within {hard_limit:?} on {url}; killed",
                    browser.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting for {}: {e}", browser.display())),
        }
    };
    // The browser's helpers may outlive it: end the group in any case.
    kill_group(&mut child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    let status = status?;
    if !status.success() {
        return Err(format!(
            "{} exited with {status} on {url}; stderr:\n{stderr}",
            browser.display()
        ));
    }
    let console = stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE") || line.contains("Uncaught"))
        .map(str::to_owned)
        .collect();
    Ok(Run {
        stdout,
        console,
        elapsed: started.elapsed(),
    })
}

static PROFILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's process group, which we created with
            // process_group(0); no memory is touched.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The `file://` URL of a local file, with an optional fragment (`all`, `request=r-1`).
pub(crate) fn file_url(path: &Path, fragment: &str) -> String {
    let mut url = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(byte as char)
            }
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    if !fragment.is_empty() {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// The value of attribute `name` on the `<body>` tag of a dumped DOM.
pub(crate) fn body_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let end = start + dom[start..].find('>')?;
    let tag = &dom[start..end];
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(unescape(&tag[at..at + len]))
}

/// Text of HTML (as Chromium serializes it) back to plain text.
pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The browser, or `None` when `OMNI_METRICS_SKIP_BROWSER=1` asks to skip (said on stderr).
/// Without a browser and without the skip, the test fails saying how to install one.
#[track_caller]
#[allow(dead_code)] // the render bench finds its browser itself
pub(crate) fn browser(test: &str) -> Option<PathBuf> {
    if std::env::var("OMNI_METRICS_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("{test}: SKIPPED (OMNI_METRICS_SKIP_BROWSER=1): no headless browser check");
        return None;
    }
    match find() {
        Some(browser) => Some(browser),
        None => panic!("{test}: no Chromium found. {INSTALL_HINT}"),
    }
}
