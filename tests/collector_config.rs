//! The collector setup agrees with itself, its README and the example's defaults.

use yaml_rust2::{Yaml, YamlLoader};

fn load(name: &str) -> Yaml {
    let path = format!("{}/collector-config/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path}: one YAML document");
    docs.remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn collector_receives_otlp_on_4317_and_4318_and_forwards_traces_to_jaeger() {
    let c = load("otel-collector.yaml");
    let protocols = &c["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"].as_str(), Some("0.0.0.0:4317"));
    assert_eq!(protocols["http"]["endpoint"].as_str(), Some("0.0.0.0:4318"));
    let traces = &c["service"]["pipelines"]["traces"];
    assert_eq!(strings(&traces["receivers"]), ["otlp"]);
    assert!(strings(&traces["processors"]).contains(&"batch".to_owned()));
    let exporters = strings(&traces["exporters"]);
    for name in &exporters {
        assert!(
            !c["exporters"][name.as_str()].is_badvalue(),
            "pipeline exporter {name} is defined"
        );
    }
    for name in strings(&traces["processors"]) {
        assert!(
            !c["processors"][name.as_str()].is_badvalue(),
            "processor {name} is defined"
        );
    }
    let jaeger = exporters
        .iter()
        .find(|e| e.starts_with("otlp"))
        .expect("an OTLP exporter to Jaeger in the traces pipeline");
    let endpoint = c["exporters"][jaeger.as_str()]["endpoint"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        endpoint, "jaeger:4317",
        "the compose service name and Jaeger's OTLP port"
    );
}

/// omni-metrics exports metrics to the same collector: it must take them (a collector
/// without a metrics pipeline refuses them, and every export is counted as failed).
#[test]
fn collector_takes_otlp_metrics() {
    let c = load("otel-collector.yaml");
    let metrics = &c["service"]["pipelines"]["metrics"];
    assert_eq!(strings(&metrics["receivers"]), ["otlp"]);
    let exporters = strings(&metrics["exporters"]);
    assert!(!exporters.is_empty(), "a metrics exporter");
    for name in &exporters {
        assert!(
            !c["exporters"][name.as_str()].is_badvalue(),
            "pipeline exporter {name} is defined"
        );
    }
}

#[test]
fn compose_runs_jaeger_and_the_collector_on_the_readme_ports() {
    let d = load("docker-compose.yaml");
    let services = &d["services"];
    assert!(
        !services["jaeger"].is_badvalue(),
        "a `jaeger` service (the collector's exporter host)"
    );
    assert_eq!(
        services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"].as_str(),
        Some("true")
    );
    let collector = &services["otel-collector"];
    let ports = strings(&collector["ports"]);
    for p in ["4317:4317", "4318:4318"] {
        assert!(
            ports.contains(&p.to_owned()),
            "collector publishes {p}: {ports:?}"
        );
    }
    assert!(strings(&services["jaeger"]["ports"]).contains(&"16686:16686".to_owned()));
    let volumes = strings(&collector["volumes"]);
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./otel-collector.yaml:")),
        "the collector mounts the config beside it: {volumes:?}"
    );
    let command = strings(&collector["command"]).join(" ");
    let mounted = volumes[0].split(':').nth(1).unwrap_or_default();
    assert!(
        command.contains(mounted),
        "the collector reads the mounted config: {command}"
    );
}

#[test]
fn readme_and_example_point_at_these_ports() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/collector-config/README.md"
    ))
    .expect("collector-config/README.md");
    for needle in [
        "http://localhost:4317",
        "http://localhost:4318",
        "http://localhost:16686",
        "omni_pipeline",
        "docker compose -f collector-config/docker-compose.yaml up -d",
    ] {
        assert!(
            readme.contains(needle),
            "collector-config/README.md lacks {needle:?}"
        );
    }
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/omni_pipeline.rs"
    ))
    .expect("the example");
    assert!(
        example.contains(r#".with_default_service_name("omni_pipeline")"#),
        "the example's service name is the one the README says to select"
    );
}
