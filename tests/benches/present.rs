//! Presenter benchmark: Go's present (Debian's `golang-golang-x-tools`, running `.play`
//! blocks locally with Debian's Go) against `sinew present`, driven from the same headless
//! Chromium in one run.
//!
//! For each: the time from starting the server to the first slide being served; then, on
//! a slide with a runnable block, the time from clicking Run to the first output line in
//! the page (measured in the page, from the click to the DOM change), median over N runs
//! after one warm-up run, first of the block as shown and then after a one-line edit (each
//! run a new edit, so nothing is served from a cache of the same program), and after an edit
//! with Run clicked a second later, as a presenter pauses after typing (sinew builds an
//! edit while the presenter pauses; Go's present does not). Go's block is
//! hello world; sinew's is a hello playbook (a `main()` against the SDK, as in
//! `playbooks/src/bin/`).
//!
//! `cargo bench -p sinew-tests --bench present`; `SINEW_BENCH_RUNS=N` runs per case
//! (default 7). The last line is `RATIO present_run=<sinew/go present, median
//! click-to-first-output with Run clicked right after an edit>`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew_tests::browser::{http, Browser, Presenting};
use sinew_tests::{free_port, host_bins, median, tools_installed, GO_TOOLS};

const GO_DECK: &str = "Hello
Go's present

* Hello, Go

.play -edit hello.go
";

const HELLO_GO: &str = "package main

import \"fmt\"

func main() {
\tfmt.Println(\"hello, world 0\")
}
";

const SINEW_DECK: &str = "# Hello
sinew present

---

## Hello, playbook

```playbook editable
use sinew::Run;

fn main() -> anyhow::Result<()> {
    let run = Run::from_args(\"hello\")?;
    run.say(\"hello, world 0\");
    run.finish()?;
    Ok(())
}
```
";

/// How to reach a tool's runnable block in its page.
struct Page {
    /// The code element whose text is the program.
    code: &'static str,
    /// The Run button.
    run: &'static str,
    /// Where the output appears.
    output: &'static str,
    /// Marks the code as edited, after its text is set.
    after_edit: &'static str,
}

const GO_PAGE: Page = Page {
    code: "div.playground pre",
    run: "div.buttons button.run",
    output: "div.output pre",
    after_edit: "",
};

const SINEW_PAGE: Page = Page {
    code: "[data-block=\"1.0\"] pre",
    run: "[data-block=\"1.0\"] button.run",
    output: "[data-block=\"1.0\"] pre.output",
    after_edit: "code.dispatchEvent(new Event('input', { bubbles: true }));",
};

fn main() -> Result<()> {
    let runs: usize = sinew_tests::bench_setting("SINEW_BENCH_RUNS", 7);
    // Chromium is installed by `Browser::start`.
    static GO: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    tools_installed(&GO, &GO_TOOLS)?;
    let bins = host_bins(true)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("hello.slide"), GO_DECK)?;
    std::fs::write(dir.path().join("hello.go"), HELLO_GO)?;
    let sinew_deck = dir.path().join("hello.md");
    std::fs::write(&sinew_deck, SINEW_DECK)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let (go_start, mut go_server, go_url) = start_go_present(dir.path())?;
    let started = Instant::now();
    let sinew_server = Presenting::start(&bins, &sinew_deck, &[], &[])?;
    let sinew_start = wait_served(&sinew_server.url, started)?;
    let (go, sinew) = runtime.block_on(async {
        let browser = Browser::start().await?;
        let go = measure(
            &browser,
            &format!("{go_url}hello.slide#2"),
            &GO_PAGE,
            "Go",
            runs,
        )
        .await?;
        let sinew = measure(
            &browser,
            &format!("{}#1", sinew_server.url),
            &SINEW_PAGE,
            "Rust",
            runs,
        )
        .await?;
        browser.close().await?;
        anyhow::Ok((go, sinew))
    })?;
    let _ = go_server.kill();
    let _ = go_server.wait();
    drop(sinew_server);

    println!(
        "{:<14} {:>15} {:>15} {:>15} {:>19}",
        "presenter", "start to slide", "run as shown", "run after edit", "run 1 s after edit"
    );
    for (name, start, timings) in [
        ("go present", go_start, go),
        ("sinew present", sinew_start, sinew),
    ] {
        println!(
            "{name:<14} {:>13.1}ms {:>13.1}ms {:>13.1}ms {:>17.1}ms",
            start * 1e3,
            timings.shown * 1e3,
            timings.edited * 1e3,
            timings.paused * 1e3
        );
    }
    println!(
        "medians of {runs} runs per case after one warm-up run; click to the first output \
         line in the page"
    );
    println!("RATIO present_run={:.3}", sinew.edited / go.edited);
    Ok(())
}

/// Starts Go's present serving `dir` with local `.play` execution; returns its
/// start-to-first-slide seconds, the process and its base URL.
fn start_go_present(dir: &Path) -> Result<(f64, Child, String)> {
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new("present")
        .current_dir(dir)
        .args([
            "-http",
            &format!("127.0.0.1:{port}"),
            "-orighost",
            "127.0.0.1",
            "-use_playground=false",
            "-play=true",
            "-content",
            ".",
            "-base",
            "/usr/share/golang-golang-x-tools/present",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting Go's present")?;
    let url = format!("http://127.0.0.1:{port}/");
    let start = wait_served(&format!("{url}hello.slide"), started)?;
    Ok((start, child, url))
}

/// Polls `url` every 2 ms until it answers 200; seconds since `started`.
fn wait_served(url: &str, started: Instant) -> Result<f64> {
    let path = url
        .trim_start_matches("http://")
        .split_once('/')
        .map_or("", |(_, path)| path);
    let request = format!("GET /{path} HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n");
    let deadline = started + Duration::from_secs(30);
    loop {
        if matches!(http(url, &request), Ok((200, _))) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("{url} was not served within 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long a presenter waits between an edit and clicking Run, in the third case.
const PAUSE: Duration = Duration::from_secs(1);

/// Click-to-first-output medians on one page, in seconds.
#[derive(Debug, Clone, Copy)]
struct Timings {
    /// The block as shown.
    shown: f64,
    /// Run clicked right after an edit.
    edited: f64,
    /// Run clicked [`PAUSE`] after an edit.
    paused: f64,
}

/// Click-to-first-output medians on the page at `url`.
async fn measure(
    browser: &Browser,
    url: &str,
    page: &Page,
    language: &str,
    runs: usize,
) -> Result<Timings> {
    browser.client.goto(url).await?;
    browser
        .wait_until(
            &format!("return document.querySelector('{}') !== null;", page.run),
            Duration::from_secs(30),
        )
        .await?;
    eprintln!("{language}: warm-up run");
    click_to_output(browser, page, "hello, world 0", Duration::from_secs(1800)).await?;
    let mut shown = Vec::new();
    for _ in 0..runs {
        shown.push(
            click_to_output(browser, page, "hello, world 0", Duration::from_secs(120)).await?,
        );
    }
    let mut edited = Vec::new();
    let mut paused = Vec::new();
    for n in 1..=2 * runs {
        let script = format!(
            "const code = document.querySelector('{}');
             code.textContent = code.textContent.replace(/hello, world \\d+/, 'hello, world {n}');
             {}
             return true;",
            page.code, page.after_edit
        );
        browser.eval(&script).await?;
        // Every other edit, Run is clicked a second later, as a presenter pauses after typing.
        let pause = n % 2 == 0;
        if pause {
            tokio::time::sleep(PAUSE).await;
        }
        let seconds = click_to_output(
            browser,
            page,
            &format!("hello, world {n}"),
            Duration::from_secs(300),
        )
        .await?;
        if pause { &mut paused } else { &mut edited }.push(seconds);
    }
    eprintln!(
        "{language}: as shown {shown:.3?} s, after an edit {edited:.3?} s, {PAUSE:?} after an \
         edit {paused:.3?} s"
    );
    Ok(Timings {
        shown: median(&mut shown),
        edited: median(&mut edited),
        paused: median(&mut paused),
    })
}

/// Clicks Run and returns the seconds, measured in the page, until `mark` shows in the
/// output; then waits for the run to end so that runs do not overlap.
async fn click_to_output(
    browser: &Browser,
    page: &Page,
    mark: &str,
    limit: Duration,
) -> Result<f64> {
    let script = format!(
        "window.sinewBench = null;
         const run = document.querySelector('{run}');
         const started = performance.now();
         const observer = new MutationObserver(() => {{
           const out = document.querySelector('{output}');
           if (out && out.textContent.includes('{mark}')) {{
             window.sinewBench = (performance.now() - started) / 1000;
             observer.disconnect();
           }}
         }});
         observer.observe(document.body, {{ childList: true, subtree: true, characterData: true }});
         run.click();
         return true;",
        run = page.run,
        output = page.output,
    );
    browser.eval(&script).await?;
    let seconds = match browser
        .wait_until("return window.sinewBench !== null;", limit)
        .await
    {
        Ok(()) => browser
            .eval("return window.sinewBench;")
            .await?
            .as_f64()
            .unwrap_or(-1.0),
        Err(_) => -1.0,
    };
    if seconds < 0.0 {
        let output = browser
            .eval(&format!(
                "const o = document.querySelector('{}'); return o ? o.textContent : '(no output)';",
                page.output
            ))
            .await?;
        bail!("no {mark:?} within {limit:?}; the output: {output}");
    }
    // Let the program finish (both print one line and exit).
    browser
        .wait_until(
            &format!(
                "const o = document.querySelector('{}'); return !!o && /exited/i.test(o.textContent);",
                page.output
            ),
            Duration::from_secs(60),
        )
        .await?;
    Ok(seconds)
}
