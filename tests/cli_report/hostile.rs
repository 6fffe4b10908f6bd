//! Hostile input (issue "Hostile input and exposed surfaces", items 3 to 6): decompression
//! bombs, a parent cycle, values outside what a trace can hold, inputs without a span. Each
//! runs the real `omni-metrics` binary as a child process and bounds what it may cost: peak
//! resident set (`ru_maxrss` of the child, from `wait4`) and wall time, with room for a busy
//! 2-core machine. The bombs are generated here, small on disk (concatenated gzip members,
//! zstd run-length blocks), never committed.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// The memory any input may cost the report command (the README's "Bad input").
const RSS_LIMIT_KIB: u64 = 100 << 10;

/// What a child run of the report cost.
struct Measured {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_rss_kib: u64,
    elapsed: Duration,
}

/// Where [`measure`] finds its arguments, one per line.
const ARGS: &str = "OMNI_REPORT_MEASURE_ARGS";
const DIR: &str = "OMNI_REPORT_MEASURE_DIR";
const TIMEOUT_MS: &str = "OMNI_REPORT_MEASURE_TIMEOUT_MS";

/// `omni-metrics report ARGS...` as a grandchild, killed after `timeout`; its peak RSS from
/// `wait4` in a launcher process of its own (this test binary run again, small): a child
/// spawned from this large test process would inherit its high-water mark (`exec` keeps the
/// spawning process's peak in `ru_maxrss`).
#[track_caller]
fn report_measured(args: &[&std::ffi::OsStr], timeout: Duration, dir: &Path) -> Measured {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().expect("UTF-8 arguments").to_owned())
        .collect();
    let launcher = spawn_child(
        "measure",
        &[
            (ARGS, &args.join("\n")),
            (DIR, &dir.display().to_string()),
            (TIMEOUT_MS, &timeout.as_millis().to_string()),
        ],
    );
    let out = launcher.wait_with_output().expect("the launcher runs");
    let v: Value = std::fs::read(dir.join("measure.json"))
        .ok()
        .and_then(|m| serde_json::from_slice(&m).ok())
        .unwrap_or_else(|| {
            panic!(
                "no measure:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let read = |p: &str| {
        String::from_utf8_lossy(&std::fs::read(dir.join(p)).unwrap_or_default()).into_owned()
    };
    let measured = Measured {
        success: v["code"] == 0,
        code: v["code"].as_i64().and_then(|c| i32::try_from(c).ok()),
        stdout: read("stdout.txt"),
        stderr: read("stderr.txt"),
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(u64::MAX),
        elapsed: Duration::from_millis(v["elapsed_ms"].as_u64().unwrap_or(u64::MAX)),
    };
    eprintln!(
        "omni-metrics report {}: {:.2} s, peak RSS {} KiB, exit {:?}",
        args.join(" "),
        measured.elapsed.as_secs_f64(),
        measured.peak_rss_kib,
        measured.code
    );
    assert!(
        v["killed"] != true,
        "omni-metrics report took more than {timeout:?} (killed); stderr:\n{}",
        tail(&measured.stderr)
    );
    assert!(
        !measured.stderr.contains("panicked"),
        "{}",
        tail(&measured.stderr)
    );
    measured
}

/// The launcher of [`report_measured`] (scenario `measure` of `child_process`): runs the
/// report with its output in files, waits for it with `wait4`, writes what it cost in
/// `measure.json`.
pub(super) fn measure() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let dir = PathBuf::from(var(DIR));
    let timeout = Duration::from_millis(var(TIMEOUT_MS).parse().unwrap_or(60_000));
    let args = var(ARGS);
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .arg("report")
        .args(args.split('\n').filter(|a| !a.is_empty()))
        .env_remove("OMNI_METRICS_JSONL")
        .stdout(std::fs::File::create(dir.join("stdout.txt")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join("stderr.txt")).expect("stderr file"))
        .spawn()
        .expect("omni-metrics runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a plain C struct, all zeros is valid.
    let mut usage = unsafe { std::mem::zeroed::<libc::rusage>() };
    let mut killed = false;
    loop {
        // SAFETY: `pid` is our child, waited for by nothing else (`child` is dropped
        // without a wait).
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break;
        }
        if !killed && start.elapsed() > timeout {
            // SAFETY: a signal to our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed();
    drop(child);
    let measured = json!({
        "code": libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        "killed": killed,
        "peak_rss_kib": usage.ru_maxrss,
        "elapsed_ms": elapsed.as_millis() as u64,
    });
    std::fs::write(dir.join("measure.json"), measured.to_string()).expect("measure file");
}

/// The end of a long text, for assertion messages.
fn tail(text: &str) -> &str {
    let mut from = text.len().saturating_sub(4000);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

/// A request of one stage, in trace `t`, as one export line.
fn request_line(t: u128, request_id: &str) -> String {
    let trace = format!("{t:032x}");
    line_of(
        "engine",
        vec![
            span_json(
                &trace,
                1,
                None,
                "omni.request",
                0.0,
                100.0,
                &[("request_id", json!(request_id))],
                &[],
            ),
            span_json(
                &trace,
                2,
                Some(1),
                "omni.stage",
                10.0,
                60.0,
                &[("stage_id", json!(0)), ("num_tokens_in", json!(12))],
                &[],
            ),
        ],
    )
}

/// gzip of `data` repeated `times` (concatenated gzip members: one stream to a reader).
fn gzip_repeated(data: &[u8], times: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).expect("gzip");
    let member = gz.finish().expect("gzip");
    member.repeat(times)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_repeated(data, 1)
}

/// A zstd frame of `len` copies of `byte`, made of run-length blocks (4 bytes per 128 KiB):
/// a few kB that decompress to `len` bytes.
fn zstd_rle_frame(byte: u8, len: usize) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    // Magic, then a frame header: no content size, no checksum, a 128 KiB window.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
    let mut left = len;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let last = u32::from(left == 0);
        // Block header (24 bits, little-endian): last block, type 1 (RLE), size.
        let header = last | 1 << 1 | (n as u32) << 3;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(byte);
    }
    frame
}

/// A record of the file exporter's older zstd form: its length, then the frame.
fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

fn jsonl_arg(path: &Path) -> Vec<&std::ffi::OsStr> {
    vec!["--format".as_ref(), "jsonl".as_ref(), path.as_os_str()]
}

/// The request ids of the report's records, sorted.
fn request_ids(stdout: &str) -> Vec<String> {
    requests(&records(stdout)).into_keys().collect()
}

/// A gzip file holding a good line, a 192 MiB line with no newline, and a good line: the
/// long line is refused with its file and line, both requests are read, and memory stays
/// bounded (it grew with the line: 2.3 MB of gzip took 520 MiB).
#[test]
fn gzip_bomb_of_an_endless_line_is_refused_in_bounded_memory() {
    let dir = test_dir("gzip-line-bomb");
    let mut data = gzip(format!("{}\n", request_line(1, "before")).as_bytes());
    data.extend(gzip_repeated(&[b'x'; 1 << 20], 192));
    data.extend(gzip(format!("\n{}\n", request_line(2, "after")).as_bytes()));
    let file = dir.join("bomb.json.gz");
    std::fs::write(&file, &data).expect("write");
    let m = report_measured(&jsonl_arg(&file), Duration::from_secs(120), &dir);
    assert!(m.success, "spans were read: {}", tail(&m.stderr));
    assert!(
        m.stderr
            .contains(&format!("{}:2: a line of ", file.display()))
            && m.stderr
                .contains("bytes, over the limit of 16 MiB: skipped"),
        "{}",
        tail(&m.stderr)
    );
    assert_eq!(request_ids(&m.stdout), ["after", "before"]);
    assert!(
        m.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        m.peak_rss_kib
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file exporter's older zstd form, each record compressed apart: a 16 kB record that
/// decompresses to 512 MiB is refused (it took 528 MiB), its neighbours read.
#[test]
fn zstd_record_bomb_is_refused_in_bounded_memory() {
    let dir = test_dir("zstd-record-bomb");
    let good =
        |t, id: &str| zstd::stream::encode_all(request_line(t, id).as_bytes(), 1).expect("zstd");
    let mut data = framed(&good(1, "before"));
    data.extend(framed(&zstd_rle_frame(0, 512 << 20)));
    data.extend(framed(&good(2, "after")));
    let file = dir.join("records.zst");
    std::fs::write(&file, &data).expect("write");
    let m = report_measured(&jsonl_arg(&file), Duration::from_secs(60), &dir);
    assert!(m.success, "spans were read: {}", tail(&m.stderr));
    assert!(
        m.stderr.contains(&format!(
            "{}: record 2 (byte {}): decompresses to more than",
            file.display(),
            framed(&good(1, "before")).len()
        )),
        "{}",
        tail(&m.stderr)
    );
    assert_eq!(request_ids(&m.stdout), ["after", "before"]);
    assert!(
        m.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        m.peak_rss_kib
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A zstd stream (the file exporter's `compression: zstd`) of a good line and 1 GiB of one
/// line, made of run-length blocks (32 kB on disk).
#[test]
fn zstd_stream_bomb_is_refused_in_bounded_memory() {
    let dir = test_dir("zstd-stream-bomb");
    let mut data =
        zstd::stream::encode_all(format!("{}\n", request_line(1, "before")).as_bytes(), 1)
            .expect("zstd");
    data.extend(zstd_rle_frame(b' ', 1 << 30));
    let file = dir.join("traces.json.zst");
    std::fs::write(&file, &data).expect("write");
    let m = report_measured(&jsonl_arg(&file), Duration::from_secs(120), &dir);
    assert!(m.success, "{}", tail(&m.stderr));
    assert!(
        m.stderr
            .contains(&format!("{}:2: a line of ", file.display()))
            && m.stderr
                .contains("bytes, over the limit of 16 MiB: skipped"),
        "{}",
        tail(&m.stderr)
    );
    assert_eq!(request_ids(&m.stdout), ["before"]);
    assert!(
        m.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        m.peak_rss_kib
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two engine spans that name each other as parent, 16,000 stages under them: each stage
/// walked the cycle (quadratic: 4,000 stages took 4.8 s in a debug build, 16,000 more than
/// a minute). The cycle is said once, the stages count as outside any request.
#[test]
fn a_parent_cycle_is_resolved_in_linear_time_and_said_once() {
    let dir = test_dir("cycle");
    let trace = format!("{:032x}", 0xc1c1e_u128);
    let mut spans = vec![
        span_json(&trace, 1, Some(2), "engine.a", 0.0, 100.0, &[], &[]),
        span_json(&trace, 2, Some(1), "engine.b", 0.0, 100.0, &[], &[]),
    ];
    for i in 0..16_000_u64 {
        spans.push(span_json(
            &trace,
            100 + i,
            Some(1),
            "omni.stage",
            10.0,
            20.0,
            &[("stage_id", json!(i % 7))],
            &[],
        ));
    }
    let lines: Vec<String> = spans
        .chunks(512)
        .map(|c| line_of("engine", c.to_vec()))
        .chain([request_line(7, "beside")])
        .collect();
    let file = dir.join("cycle.json");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let m = report_measured(&jsonl_arg(&file), Duration::from_secs(20), &dir);
    assert!(m.success, "{}", tail(&m.stderr));
    assert!(
        m.elapsed < Duration::from_secs(5),
        "{:?} for 16,002 spans",
        m.elapsed
    );
    assert_eq!(
        m.stderr.matches("parent cycle").count(),
        1,
        "{}",
        tail(&m.stderr)
    );
    assert!(
        m.stderr.contains(&trace) && m.stderr.contains("16000 spans"),
        "{}",
        tail(&m.stderr)
    );
    assert_eq!(request_ids(&m.stdout), ["beside"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One bad value spoils only itself: an `intValue` beyond int64 dropped its whole line; a
/// `doubleValue` of 1e308 became a count of u64::MAX; timestamps 18,000,000,000,000 ms
/// apart gave that as `e2e_total_ms`. Each is now said with its file and line, counted in
/// `invalid_spans`, and the span and its line kept.
#[test]
fn values_out_of_range_spoil_only_themselves() {
    let dir = test_dir("values");
    let t1 = "4bf92f3577b34da6a3ce929d0e0e4736";
    let big_int = json!({"key": "num_tokens_in", "value": {"intValue": "99999999999999999999"}});
    let big_double = json!({"key": "num_tokens_out", "value": {"doubleValue": 1e308}});
    let mut stage = span_json(
        t1,
        2,
        Some(1),
        "omni.stage",
        10.0,
        60.0,
        &[("stage_id", json!(0)), ("audio_generated_frames", json!(5))],
        &[],
    );
    if let Some(attrs) = stage["attributes"].as_array_mut() {
        attrs.push(big_int);
        attrs.push(big_double);
    }
    let line1 = line_of(
        "engine",
        vec![
            span_json(
                t1,
                1,
                None,
                "omni.request",
                0.0,
                100.0,
                &[("request_id", json!("r-1"))],
                &[],
            ),
            stage,
        ],
    );
    // Timestamps 1.8e13 ms apart: 1 ns and 1.8e19 ns (a clock in the wrong unit).
    let t2 = "0af7651916cd43dd8448eb211c80319c";
    let mut far = span_json(
        t2,
        1,
        None,
        "omni.request",
        0.0,
        0.0,
        &[("request_id", json!("r-2"))],
        &[],
    );
    far["startTimeUnixNano"] = json!("1");
    far["endTimeUnixNano"] = json!("18000000000000000000");
    let line2 = line_of("engine", vec![far]);
    let file = dir.join("values.json");
    std::fs::write(&file, format!("{line1}\n{line2}\n")).expect("write");
    let m = report_measured(&jsonl_arg(&file), Duration::from_secs(30), &dir);
    assert!(m.success, "{}", tail(&m.stderr));
    let name = file.display().to_string();
    for said in [
        format!("{name}:1: "),
        "num_tokens_in".to_owned(),
        "num_tokens_out".to_owned(),
        format!("{name}:2: "),
    ] {
        assert!(m.stderr.contains(&said), "{said}:\n{}", tail(&m.stderr));
    }
    let all = records(&m.stdout);
    let r = requests(&all);
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["r-1", "r-2"],
        "both lines kept"
    );
    let stage = &r["r-1"]["stages"][0];
    assert_eq!(stage["audio_generated_frames"], 5, "the span kept: {stage}");
    assert_eq!(stage["num_tokens_in"], 0, "{stage}");
    assert_eq!(stage["num_tokens_out"], 0, "not u64::MAX: {stage}");
    assert_eq!(r["r-1"]["invalid_spans"], 1);
    let e2e = r["r-2"]["e2e_total_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(e2e <= 1e12, "e2e_total_ms {e2e}");
    assert_eq!(r["r-2"]["invalid_spans"], 1);
    for summary in summaries(&all).values() {
        let wall = summary["e2e_wall_time_ms"].as_f64().unwrap_or(f64::NAN);
        assert!(wall <= 1e12, "{summary}");
        assert_eq!(
            summary["invalid_spans"], 1,
            "agrees with its request: {summary}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that holds no span (empty, blank lines, `{}`) is not a report: the command fails
/// and says what it read, so that a script given the wrong file notices. A file with spans
/// and a corrupt line still succeeds (`corrupt_lines_are_named_and_the_rest_is_read`).
#[test]
fn no_span_in_any_input_is_a_failure_that_says_what_was_read() {
    let dir = test_dir("no-span");
    for (name, content) in [
        ("empty.json", ""),
        ("blank.json", "\n\n   \n"),
        ("object.json", "{}\n"),
        ("logs.json", "{\"resourceLogs\":[]}\n"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, content).expect("write");
        let m = report_measured(&[file.as_os_str()], Duration::from_secs(30), &dir);
        assert_eq!(m.code, Some(1), "{name}: {}", m.stderr);
        assert!(
            m.stderr.contains("no span found in 1 file"),
            "{name}: {}",
            m.stderr
        );
        assert!(m.stdout.is_empty(), "{name}: {}", m.stdout);
    }
    // Two files, one with spans: a report.
    let (good, empty) = (dir.join("good.json"), dir.join("empty.json"));
    std::fs::write(&good, request_line(1, "r-1") + "\n").expect("write");
    let m = report_measured(
        &[good.as_os_str(), empty.as_os_str()],
        Duration::from_secs(30),
        &dir,
    );
    assert!(m.success, "{}", m.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
