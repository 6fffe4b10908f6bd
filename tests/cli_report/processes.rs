//! One request, two processes, two files: the frontend process opens and finishes the
//! request, a worker process runs its stages and transfers as children of the remote span
//! (the trace context the frontend handed over); each exports to its own collector file.
//! The report of both files has the whole request.

use super::collector::FileCollector;
use super::*;

/// The stage spans the worker exported, with the figures its layer put on them.
fn exported_gen_times(worker_json: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(worker_json)
        .expect("worker traces")
        .lines()
    {
        let v: Value = serde_json::from_str(line).expect("json");
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let gen_ms = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "stage_gen_time_ms")
                        .and_then(|a| a["value"]["doubleValue"].as_f64());
                    if let Some(gen_ms) = gen_ms {
                        out.push((s["name"].as_str().unwrap_or_default().to_owned(), gen_ms));
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn spans_of_two_processes_in_two_files_rebuild_whole_requests() {
    let dir = test_dir("processes");
    let dir_text = dir.display().to_string();
    let front = FileCollector::start(&dir, "frontend-traces");
    let work = FileCollector::start(&dir, "worker-traces");
    let frontend = spawn_child(
        "frontend",
        &[
            ("OMNI_REPORT_DIR", &dir_text),
            ("OMNI_REPORT_ENDPOINT", &front.endpoint),
        ],
    );
    let worker = spawn_child(
        "worker",
        &[
            ("OMNI_REPORT_DIR", &dir_text),
            ("OMNI_REPORT_ENDPOINT", &work.endpoint),
        ],
    );
    finish_child(worker);
    finish_child(frontend);
    let (front_file, work_file) = (front.json.clone(), work.json.clone());
    drop((front, work));

    // The frontend alone saw a request without stages.
    let live = requests(&records_in(&dir.join("frontend.jsonl")));
    assert_eq!(live["x-1"]["stages"].as_array().map(Vec::len), Some(0));

    let (stdout, stderr) = report_ok([
        "--format".as_ref(),
        "jsonl".as_ref(),
        front_file.as_os_str(),
        work_file.as_os_str(),
    ]);
    let report = requests(&records(&stdout));
    let x = &report["x-1"];
    let stages = x["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 3, "{stdout}\n{stderr}");
    assert_eq!(x["transfers"].as_array().map(Vec::len), Some(2));
    // Counts exactly as the worker set them.
    assert_eq!(x["e2e_total_tokens"], 10 + 3 * 5);
    assert_eq!(x["transfers"][0]["size_bytes"], 2048);
    assert_eq!(x["invalid_spans"], 0);
    for s in stages {
        assert_eq!(s["output_chunks"], 1);
        assert!(s["queue_time_ms"].as_f64().is_some_and(|q| q >= 2.0), "{s}");
    }
    // Times as the worker measured them (its annotations), and the request's as the
    // frontend did.
    let mut names: Vec<(String, f64)> = stages
        .iter()
        .map(|s| {
            (
                format!(
                    "stage {} {}",
                    s["stage_id"],
                    s["stage_name"].as_str().unwrap_or_default()
                ),
                s["stage_gen_time_ms"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(names, exported_gen_times(&work_file));
    let (a, b) = (
        live["x-1"]["e2e_total_ms"].as_f64().unwrap_or_default(),
        x["e2e_total_ms"].as_f64().unwrap_or_default(),
    );
    assert!((a - b).abs() < 1.0, "e2e: live {a}, report {b}");
    assert_eq!(x["trace_id"], live["x-1"]["trace_id"]);

    // The order of the files does not matter.
    let (reversed, _) = report_ok([
        "--format".as_ref(),
        "jsonl".as_ref(),
        work_file.as_os_str(),
        front_file.as_os_str(),
    ]);
    assert_eq!(requests(&records(&reversed)), report);

    // The worker's file alone: stages whose request is elsewhere, said.
    let (stdout, stderr) = report_ok([work_file.as_os_str()]);
    assert!(!stdout.contains("RequestE2EStats"), "{stdout}");
    assert!(
        stderr.contains("5 spans have a parent that is not in the input"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
