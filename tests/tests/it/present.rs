//! `sinew present` in a real browser (Debian's Chromium, headless, over WebDriver): keyboard
//! navigation, a playbook block's output streamed line by line, an edit run as edited, a
//! compile error on its line, Stop leaving no process or guest, refusal of a foreign
//! origin, and a screenshot with the code and its output visible.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use sinew_tests::browser::{Browser, Presenting};
use sinew_tests::{host_bins, prepared, qemu_processes_mentioning};

const DECK: &str = r#"# Browser deck
Tested in Chromium
3 Dec 2026

---

## Ticks

```playbook editable stop-on-leave
fn main() {
    for i in 1..=12 {
        println!("tick {i}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
```

: the notes of the ticks

---

## Broken

```playbook
fn main() {
    let x: u32 = "not a number";
}
```

---

## A guest

```playbook
use sinew::{Arch, LabSpec, MachineSpec, Run};

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("stay")?;
    let lab = run.boot(&LabSpec::new("stay").machine(MachineSpec::new("left", Arch::X86_64)))?;
    println!("ready {:?}", lab.hosts()[0].agent_address());
    std::thread::sleep(std::time::Duration::from_secs(600));
    Ok(())
}
```
"#;

const EDITED: &str = "fn main() {\n    println!(\"edited {}\", 6 * 7);\n}\n";

fn deck() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("talk.md");
    std::fs::write(&path, DECK).expect("write the deck");
    (dir, path)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

/// Pids of live children of `server` running the scratch binary of `block` (`1-0`).
fn block_processes(server: u32, block: &str) -> Vec<i32> {
    let suffix = format!("-{block}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let mut after = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace();
            let (state, parent) = (after.next(), after.next());
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let name = exe.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            state != Some("Z")
                && parent == Some(server.to_string().as_str())
                && name.starts_with("slide-")
                && name.ends_with(&suffix)
        })
        .collect()
}

async fn current_slide(browser: &Browser) -> (i64, String) {
    let current = browser
        .eval("return window.sinewPresent.current();")
        .await
        .expect("current slide");
    let hash = browser
        .eval("return location.hash;")
        .await
        .expect("location hash");
    (
        current.as_i64().expect("a number"),
        hash.as_str().unwrap_or_default().to_owned(),
    )
}

async fn press(browser: &Browser, key: impl std::fmt::Display) {
    browser
        .client
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys(&key.to_string())
        .await
        .expect("send a key");
}

async fn click(browser: &Browser, block: &str, button: &str) {
    browser
        .client
        .find(Locator::Css(&format!(
            "[data-block=\"{block}\"] button.{button}"
        )))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
}

/// Waits up to `seconds` until block `block`'s output pane holds `text`; `what` names the
/// expectation in the failure.
async fn wait_output(browser: &Browser, block: &str, text: &str, seconds: u64, what: &str) {
    let script = format!(
        "return document.querySelector('[data-block=\"{block}\"] pre.output').textContent.includes('{text}');"
    );
    browser
        .wait_until(&script, Duration::from_secs(seconds))
        .await
        .expect(what);
}

/// Waits up to `seconds` until block `block`'s state line says `state`.
async fn wait_state(browser: &Browser, block: &str, state: &str, seconds: u64, what: &str) {
    let script = format!(
        "return document.querySelector('[data-block=\"{block}\"] .state').textContent === '{state}';"
    );
    browser
        .wait_until(&script, Duration::from_secs(seconds))
        .await
        .expect(what);
}

async fn output(browser: &Browser, block: &str) -> String {
    let script = format!(
        "return document.querySelector('[data-block=\"{block}\"] pre.output').textContent;"
    );
    let text = browser.eval(&script).await.expect("the output pane");
    text.as_str().unwrap_or_default().to_owned()
}

/// Whether block 1.0 of the deck at `deck` holds [`EDITED`] and its binary was linked
/// after that source was written. The block's directory is named by the deck's key, the
/// first 12 hex digits of the sha256 of the deck's canonical path.
fn edit_built(deck: &Path) -> bool {
    use sha2::{Digest, Sha256};
    let canonical = deck.canonicalize().expect("the deck's path");
    let key = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let name = format!("slide-{}-1-0", &key[..12]);
    let dir = target.join("sinew-present").join(&name);
    let main_rs = dir.join("src/main.rs");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified());
    std::fs::read_to_string(&main_rs).is_ok_and(|source| source == EDITED)
        && matches!(
            (modified(&main_rs), modified(&dir.join(&name))),
            (Ok(written), Ok(linked)) if linked > written
        )
}

/// The colour of the screenshot's pixel at CSS pixel (`x`, `y`).
fn pixel(png: &[u8], x: f64, y: f64) -> [u8; 3] {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let (x, y) = (on_screen(x), on_screen(y));
    let at = (y * info.width as usize + x) * channels;
    [buf[at], buf[at + 1], buf[at + 2]]
}

/// A page coordinate as a pixel index.
// The value is checked to be a small non-negative number first, so the cast is exact
// up to the fraction it drops.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn on_screen(coordinate: f64) -> usize {
    assert!(
        (0.0..10_000.0).contains(&coordinate),
        "{coordinate} is off screen"
    );
    coordinate as usize
}

async fn rect(browser: &Browser, selector: &str) -> (f64, f64, f64, f64) {
    let script = format!(
        "const r = document.querySelector('{selector}').getBoundingClientRect(); \
         return [r.x, r.y, r.width, r.height];"
    );
    let value = browser.eval(&script).await.expect("a rectangle");
    let n = |i: usize| value[i].as_f64().expect("a number");
    (n(0), n(1), n(2), n(3))
}

#[test]
fn a_deck_in_chromium_navigates_streams_edits_shows_errors_and_refuses_other_origins() {
    let bins = host_bins(false).expect("host binaries");
    let (_dir, deck) = deck();
    let mut server = Presenting::start(&bins, &deck, &[], &[]).expect("sinew present starts");
    runtime().block_on(async {
        let browser = Browser::start().await.expect("Chromium starts");
        browser.client.goto(&server.url).await.expect("load the deck");
        let title = browser.client.title().await.expect("title");
        assert_eq!(title, "Browser deck");

        // Keyboard navigation, with a URL per slide.
        assert_eq!(current_slide(&browser).await, (0, "#0".into()));
        press(&browser, Key::Right).await;
        assert_eq!(current_slide(&browser).await, (1, "#1".into()));
        press(&browser, Key::End).await;
        assert_eq!(current_slide(&browser).await, (3, "#3".into()));
        press(&browser, Key::Home).await;
        assert_eq!(current_slide(&browser).await.0, 0);
        press(&browser, Key::PageDown).await;
        assert_eq!(current_slide(&browser).await.0, 1);
        let url = format!("{}#2", server.url);
        browser.client.goto(&url).await.expect("a slide's URL");
        browser.client.refresh().await.expect("reload");
        assert_eq!(current_slide(&browser).await.0, 2, "a slide's URL opens it");
        press(&browser, Key::Up).await;

        // `p` opens the presenter view with the slide's notes; moving there moves the
        // audience's view too.
        let audience = browser.client.window().await.expect("this window");
        press(&browser, "p").await;
        let presenter = browser
            .client
            .windows()
            .await
            .expect("windows")
            .into_iter()
            .find(|w| *w != audience)
            .expect("a presenter window");
        browser
            .client
            .switch_to_window(presenter)
            .await
            .expect("switch to the presenter view");
        browser
            .wait_until(
                "return document.body.classList.contains('presenter') && \
                 document.getElementById('notes').textContent.includes('the notes of the ticks');",
                Duration::from_secs(10),
            )
            .await
            .expect("the presenter view shows slide 1's notes");
        press(&browser, Key::Right).await;
        browser
            .client
            .close_window()
            .await
            .expect("close the presenter view");
        browser
            .client
            .switch_to_window(audience)
            .await
            .expect("back to the audience view");
        assert_eq!(
            current_slide(&browser).await.0,
            2,
            "the audience view followed the presenter"
        );
        press(&browser, Key::Left).await;

        // Run: every line shows before the next is printed (one each 200 ms).
        browser
            .eval(
                "window.samples = [];
                 const pane = document.querySelector('[data-block=\"1.0\"] pre.output');
                 window.sampler = setInterval(() => {
                   const n = (pane.textContent.match(/tick \\d+/g) || []).length;
                   if (window.samples[window.samples.length - 1] !== n) window.samples.push(n);
                 }, 10);
                 return true;",
            )
            .await
            .expect("a sampler");
        click(&browser, "1.0", "run").await;
        wait_output(&browser, "1.0", "exited", 600, "the ticks run to their end").await;
        let samples = browser.eval("return window.samples;").await.expect("samples");
        let seen: Vec<i64> = samples
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(serde_json::Value::as_i64)
            .collect();
        assert!(
            (1..=12).all(|n| seen.contains(&n)),
            "each tick line showed on its own before the next: saw counts {seen:?}"
        );
        assert!(output(&browser, "1.0").await.contains("tick 12\n"));

        // The screenshot shows the code and, under it, the output.
        let png = browser.client.screenshot().await.expect("a screenshot");
        if let Ok(dir) = std::env::var("CARGO_TARGET_TMPDIR") {
            let _ = std::fs::write(Path::new(&dir).join("present-slide-1.png"), &png);
        }
        let (x, y, w, h) = rect(&browser, "[data-block=\"1.0\"] pre").await;
        assert!(w > 200.0 && h > 50.0, "the code block is on screen: {w}x{h}");
        let code = pixel(&png, x + 4.0, y + 4.0);
        assert!(code.iter().all(|c| *c > 200), "the code block is light: {code:?}");
        let (x, y, w, h) = rect(&browser, "[data-block=\"1.0\"] pre.output").await;
        assert!(w > 200.0 && h > 30.0, "the output pane is on screen: {w}x{h}");
        assert!(y + h <= 800.0, "the output pane fits the window");
        let pane = pixel(&png, x + 4.0, y + 4.0);
        assert!(pane.iter().all(|c| *c < 60), "the output pane is dark: {pane:?}");

        // An edit runs as edited.
        browser
            .client
            .execute(
                "const pre = document.querySelector('[data-block=\"1.0\"] pre');
                 pre.textContent = arguments[0];
                 pre.dispatchEvent(new Event('input', { bubbles: true }));
                 return true;",
                vec![serde_json::Value::String(EDITED.into())],
            )
            .await
            .expect("edit the block");
        // The edit is built while the presenter pauses, before Run is pressed.
        let built = tokio::time::timeout(Duration::from_secs(300), async {
            while !edit_built(&deck) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(built.is_ok(), "the edit was built before Run");
        click(&browser, "1.0", "run").await;
        wait_output(&browser, "1.0", "exited", 300, "the edit runs").await;
        let edited = output(&browser, "1.0").await;
        assert!(edited.contains("edited 42"), "{edited}");
        assert!(!edited.contains("tick"), "{edited}");

        // A compile error is shown, on the line it names.
        press(&browser, Key::Right).await;
        click(&browser, "2.0", "run").await;
        browser
            .wait_until(
                "return document.querySelector('[data-block=\"2.0\"] .line.error') !== null;",
                Duration::from_secs(300),
            )
            .await
            .expect("the error's line is marked");
        let marked = browser
            .eval(
                "return Array.from(document.querySelectorAll('[data-block=\"2.0\"] .line'))
                   .findIndex(l => l.classList.contains('error'));",
            )
            .await
            .expect("the marked line");
        assert_eq!(marked, 1, "the second line holds the error");
        wait_state(&browser, "2.0", "failed", 60, "the run says it failed").await;
        assert!(output(&browser, "2.0").await.contains("mismatched types"));

        // A page of another origin cannot run a block.
        let port = server.url.rsplit(':').next().unwrap_or_default().trim_end_matches('/');
        browser
            .client
            .goto(&format!("http://localhost:{port}/"))
            .await
            .expect("the deck under another origin");
        let runs_before = server.log().matches("run block").count();
        let sent = browser
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0], { method: 'POST', mode: 'no-cors', body: '{\"block\":\"1.0\"}' })
                   .then(() => done('sent'), (e) => done(String(e)));",
                vec![serde_json::Value::String(format!(
                    "http://127.0.0.1:{port}/api/run"
                ))],
            )
            .await
            .expect("a cross-origin request");
        assert_eq!(sent, "sent");
        let log = server.log();
        assert!(
            log.contains("refused") && log.contains("http://localhost:"),
            "the server refused the foreign origin: {log}"
        );
        assert_eq!(log.matches("run block").count(), runs_before, "nothing ran");
        browser.close().await.expect("close the browser");
    });
    assert_eq!(server.stop().expect("stop the server"), Some(0));
}

#[test]
fn stop_in_chromium_leaves_no_process_no_guest_and_no_directory() {
    prepared();
    let bins = host_bins(false).expect("host binaries");
    let (_dir, deck) = deck();
    let lab_runtime = tempfile::tempdir().expect("a runtime directory");
    let mut server = Presenting::start(
        &bins,
        &deck,
        &[],
        &[("XDG_RUNTIME_DIR", lab_runtime.path())],
    )
    .expect("sinew present starts");
    runtime().block_on(async {
        let browser = Browser::start().await.expect("Chromium starts");
        browser
            .client
            .goto(&format!("{}#3", server.url))
            .await
            .expect("load the guest slide");
        click(&browser, "3.0", "run").await;
        wait_output(&browser, "3.0", "ready ", 900, "the block boots its guest").await;
        assert_eq!(
            block_processes(server.pid(), "3-0").len(),
            1,
            "the playbook runs"
        );
        assert_eq!(
            qemu_processes_mentioning(lab_runtime.path()).len(),
            1,
            "its guest runs"
        );
        click(&browser, "3.0", "stop").await;
        wait_state(&browser, "3.0", "stopped", 60, "the run stops").await;
        assert!(
            block_processes(server.pid(), "3-0").is_empty(),
            "no playbook left"
        );
        let qemu = qemu_processes_mentioning(lab_runtime.path());
        assert!(qemu.is_empty(), "no QEMU left: {qemu:?}");
        let left: Vec<_> = std::fs::read_dir(lab_runtime.path())
            .expect("the runtime directory")
            .collect();
        assert!(left.is_empty(), "no private directory left: {left:?}");

        // Leaving the slide of a `stop-on-leave` block stops its run.
        press(&browser, Key::Home).await;
        press(&browser, Key::Right).await;
        click(&browser, "1.0", "run").await;
        wait_output(&browser, "1.0", "tick 1", 600, "the ticks start").await;
        press(&browser, Key::Right).await;
        wait_state(
            &browser,
            "1.0",
            "stopped",
            30,
            "leaving the slide stopped the run",
        )
        .await;
        assert!(
            !output(&browser, "1.0").await.contains("tick 12"),
            "it stopped before its end"
        );
        assert!(block_processes(server.pid(), "1-0").is_empty());

        // Closing the tab stops a run too.
        press(&browser, Key::Left).await;
        click(&browser, "1.0", "run").await;
        wait_output(&browser, "1.0", "tick 1", 600, "the ticks start").await;
        browser.close().await.expect("close the browser");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !block_processes(server.pid(), "1-0").is_empty()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            block_processes(server.pid(), "1-0").is_empty(),
            "closing the tab stopped the run"
        );
    });
    assert_eq!(server.stop().expect("stop the server"), Some(0));
}

/// One HTTP/1.1 request to the server at `url`'s address; the status and the body.
fn http(url: &str, request: &str) -> (u16, String) {
    sinew_tests::browser::http(url, request).expect("an HTTP exchange with the server")
}

fn get(url: &str, path: &str) -> (u16, String) {
    http(
        url,
        &format!("GET {path} HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n"),
    )
}

/// Runs block `block` through the API and returns the whole event stream.
fn run_block(url: &str, json: &str) -> (u16, String) {
    http(
        url,
        &format!(
            "POST /api/run HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
}

const HELLO_GO: &str = "package main

import \"fmt\"

func main() {
\tfmt.Println(\"hello from go\")
}
";

const GO_DECK: &str = "Go deck
A .slide for Go's present

* Hello

.play hello.go

* Broken

.play -edit broken.go
";

fn ensure_go() {
    static GO: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    sinew_tests::tools_installed(&GO, &sinew_tests::GO_TOOLS[..1]).expect("Go is installed");
}

#[test]
fn go_play_blocks_run_with_the_go_toolchain_and_an_export_shows_their_output() {
    ensure_go();
    let bins = host_bins(false).expect("host binaries");
    let dir = tempfile::tempdir().expect("tempdir");
    let deck = dir.path().join("go.slide");
    std::fs::write(&deck, GO_DECK).expect("deck");
    std::fs::write(dir.path().join("hello.go"), HELLO_GO).expect("hello.go");
    std::fs::write(
        dir.path().join("broken.go"),
        HELLO_GO.replace("fmt.Println", "fmt.Printn"),
    )
    .expect("broken.go");
    let state = tempfile::tempdir().expect("a state directory");
    let env = [("SINEW_STATE_DIR", state.path())];
    let mut server = Presenting::start(&bins, &deck, &[], &env).expect("sinew present starts");

    let (status, events) = run_block(&server.url, r#"{"block":"1.0"}"#);
    assert_eq!(status, 200, "{events}");
    assert!(
        events.contains(r#"{"kind":"stdout","text":"hello from go\n"}"#),
        "{events}"
    );
    assert!(events.contains(r#""kind":"exit","code":0"#), "{events}");

    let (_, events) = run_block(&server.url, r#"{"block":"2.0"}"#);
    assert!(events.contains("undefined: fmt.Printn"), "{events}");
    assert!(
        events.contains(r#""line":6"#),
        "the error names line 6: {events}"
    );
    assert!(events.contains(r#""kind":"failed""#), "{events}");

    // An edit of a block that is not editable is refused; of one that is, it runs.
    let edit = serde_json::json!({"block": "1.0", "code": "package main\nfunc main() {}\n"});
    let (status, body) = run_block(&server.url, &edit.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not editable"), "{body}");
    let fixed = serde_json::json!({"block": "2.0", "code": HELLO_GO.replace("hello", "fixed")});
    let (_, events) = run_block(&server.url, &fixed.to_string());
    assert!(events.contains("fixed from go"), "{events}");
    assert_eq!(server.stop().expect("stop"), Some(0));

    // The export opens with no server and shows each block's last output.
    let out = dir.path().join("export");
    let exported = std::process::Command::new(bins.join("sinew"))
        .args(["present", "--export"])
        .arg(&out)
        .arg(&deck)
        .env("SINEW_STATE_DIR", state.path())
        .output()
        .expect("sinew present --export");
    assert!(exported.status.success(), "{exported:?}");
    runtime().block_on(async {
        let browser = Browser::start().await.expect("Chromium starts");
        let page = format!("file://{}#1", out.join("index.html").display());
        browser.client.goto(&page).await.expect("open the export");
        assert!(output(&browser, "1.0").await.contains("hello from go"));
        assert!(output(&browser, "2.0").await.contains("fixed from go"));
        let buttons = browser
            .eval("return document.querySelectorAll('button.run').length;")
            .await
            .expect("buttons");
        assert_eq!(buttons, 0, "an export has no Run buttons");
        browser.close().await.expect("close");
    });
}

#[test]
fn check_builds_every_block_and_names_the_first_that_fails() {
    let bins = host_bins(false).expect("host binaries");
    let (dir, deck) = deck();
    let check = |deck: &Path| {
        std::process::Command::new(bins.join("sinew"))
            .args(["present", "--check"])
            .arg(deck)
            .output()
            .expect("sinew present --check")
    };
    let out = check(&deck);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = DECK
        .lines()
        .position(|l| l == "```playbook")
        .expect("the block")
        + 1;
    assert!(
        stderr.contains(&format!("slide 2 ({}:{line}), block 0", deck.display())),
        "{stderr}"
    );
    assert!(stderr.contains("mismatched types"), "{stderr}");

    let fine = dir.path().join("fine.md");
    let text = DECK
        .split("\n---\n\n## Broken")
        .next()
        .expect("the first slides");
    std::fs::write(&fine, text).expect("a deck without the broken block");
    let out = check(&fine);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 blocks checked\n");
}

#[test]
fn a_non_local_listener_needs_the_token_and_a_deck_broken_mid_talk_shows_its_error() {
    let bins = host_bins(false).expect("host binaries");
    let (_dir, deck) = deck();
    let mut server = Presenting::start(&bins, &deck, &["--listen", "0.0.0.0:0"], &[])
        .expect("sinew present starts");
    let (base, token) = server
        .url
        .split_once("/?token=")
        .expect("a token in the URL");
    assert_eq!(token.len(), 32, "{}", server.url);
    assert_eq!(get(base, "/").0, 403, "no token");
    assert_eq!(get(base, "/?token=wrong").0, 403, "a wrong token");
    let (status, page) = get(base, &format!("/?token={token}"));
    assert_eq!(status, 200);
    assert!(page.contains("<title>Browser deck</title>"));
    server.stop().expect("stop");

    let mut server = Presenting::start(&bins, &deck, &[], &[]).expect("sinew present starts");
    assert_eq!(get(&server.url, "/").0, 200);
    std::fs::write(
        &deck,
        format!("{DECK}\n---\n\n```playbook\nfn main() {{}}\n"),
    )
    .expect("break");
    let (status, page) = get(&server.url, "/");
    assert_eq!(status, 500);
    let line = DECK.lines().count() + 4;
    assert!(
        page.contains(&format!("{}:{line}", deck.display())) && page.contains("never closed"),
        "{page}"
    );
    // A slide that cannot be read shows why, and the others are served.
    std::fs::write(
        &deck,
        DECK.replace("```playbook editable", "```playbook editabel"),
    )
    .expect("break one slide");
    let (status, page) = get(&server.url, "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("class=\"problem\""), "{page}");
    assert!(
        page.contains("editabel"),
        "the error names the word: {page}"
    );
    assert!(
        page.contains("data-block=\"2.0\""),
        "the next slides are served"
    );
    std::fs::write(&deck, DECK).expect("mend");
    assert_eq!(get(&server.url, "/").0, 200, "the server kept serving");
    assert_eq!(get(&server.url, "/../etc/passwd").0, 404);
    server.stop().expect("stop");
}

const LAB_DECK: &str = "# Lab deck
Lab: amd=x86_64

---

## Where am I

```sh guest=amd
uname -m; echo kept > /tmp/mark
```

---

## Still there

```sh guest=amd
cat /tmp/mark; sleep 600
```
";

#[test]
fn guest_blocks_run_on_a_lab_kept_across_slides_and_quitting_stops_it() {
    prepared();
    let bins = host_bins(false).expect("host binaries");
    let dir = tempfile::tempdir().expect("tempdir");
    let deck = dir.path().join("lab.md");
    std::fs::write(&deck, LAB_DECK).expect("deck");
    let lab_runtime = tempfile::tempdir().expect("a runtime directory");
    let mut server = Presenting::start(
        &bins,
        &deck,
        &[],
        &[("XDG_RUNTIME_DIR", lab_runtime.path())],
    )
    .expect("sinew present starts");

    let (status, events) = run_block(&server.url, r#"{"block":"1.0"}"#);
    assert_eq!(status, 200, "{events}");
    assert!(events.contains(r#""text":"booting the lab""#), "{events}");
    assert!(
        events.contains(r#"{"kind":"stdout","text":"x86_64\n"}"#),
        "{events}"
    );
    assert!(events.contains(r#""kind":"exit","code":0"#), "{events}");

    // The next slide's block finds the first one's file: the same guest, still up. A new
    // Run of the block stops the one before; Stop ends the new one's sleep.
    let runs = server.log().matches("run block block=2.0").count();
    let started = |server: &Presenting, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while server.log().matches("run block block=2.0").count() < n
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its command is running on the guest once the output came; give it that long.
        std::thread::sleep(Duration::from_secs(2));
    };
    let url = server.url.clone();
    let first = std::thread::spawn(move || run_block(&url, r#"{"block":"2.0"}"#));
    started(&server, runs + 1);
    let url = server.url.clone();
    let second = std::thread::spawn(move || run_block(&url, r#"{"block":"2.0"}"#));
    let (_, events) = first.join().expect("the first run");
    assert!(
        events.contains(r#"{"kind":"stdout","text":"kept\n"}"#),
        "{events}"
    );
    assert!(!events.contains("booting the lab"), "booted once: {events}");
    assert!(
        events.contains(r#""stopped":true"#),
        "a new Run stopped it: {events}"
    );
    started(&server, runs + 2);
    let stop = "{\"block\":\"2.0\"}";
    let (status, _) = http(
        &server.url,
        &format!(
            "POST /api/stop HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{stop}",
            stop.len()
        ),
    );
    assert_eq!(status, 200);
    let (_, events) = second.join().expect("the second run");
    assert!(
        events.contains(r#""stopped":true"#),
        "Stop stopped it: {events}"
    );
    assert_eq!(qemu_processes_mentioning(lab_runtime.path()).len(), 1);

    assert_eq!(server.stop().expect("stop the server"), Some(0));
    let qemu = qemu_processes_mentioning(lab_runtime.path());
    assert!(qemu.is_empty(), "no QEMU left: {qemu:?}");
    let left: Vec<_> = std::fs::read_dir(lab_runtime.path())
        .expect("the runtime directory")
        .collect();
    assert!(left.is_empty(), "no private directory left: {left:?}");
}
