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

// The two-tier setup (collector-config/two-tier): agents load-balance traces by trace id
// over a gateway tier, which writes trace files for the report and to Jaeger.

/// Every receiver, processor and exporter a pipeline names is defined, and every pipeline
/// has receivers and exporters. Returns the pipelines, by name.
#[track_caller]
fn pipelines(c: &Yaml, file: &str) -> Vec<(String, Yaml)> {
    let pipelines = c["service"]["pipelines"]
        .as_hash()
        .unwrap_or_else(|| panic!("{file}: service.pipelines"));
    let mut out = Vec::new();
    let mut undefined = Vec::new();
    for (name, p) in pipelines {
        let name = name.as_str().unwrap_or_default().to_owned();
        for section in ["receivers", "processors", "exporters"] {
            let names = strings(&p[section]);
            if section != "processors" && names.is_empty() {
                undefined.push(format!("{name}: no {section}"));
            }
            for component in names {
                if c[section][component.as_str()].is_badvalue() {
                    undefined.push(format!("{name}: {section} {component}"));
                }
            }
        }
        out.push((name, p.clone()));
    }
    assert!(
        undefined.is_empty(),
        "{file}: pipelines name what is not defined: {undefined:?}"
    );
    out
}

/// `host:port` to the port.
fn port(endpoint: &str) -> &str {
    endpoint.rsplit(':').next().unwrap_or_default()
}

#[test]
fn every_pipeline_of_every_config_names_defined_components() {
    for file in [
        "otel-collector.yaml",
        "two-tier/agent.yaml",
        "two-tier/gateway.yaml",
    ] {
        let c = load(file);
        assert!(!pipelines(&c, file).is_empty(), "{file}: a pipeline");
        // A memory limiter, where there is one, runs first.
        for (name, p) in pipelines(&c, file) {
            let processors = strings(&p["processors"]);
            if let Some(i) = processors.iter().position(|p| p == "memory_limiter") {
                assert_eq!(i, 0, "{file} {name}: memory_limiter first: {processors:?}");
            }
        }
    }
}

#[test]
fn agent_load_balances_traces_by_trace_id_over_the_gateways() {
    let agent = load("two-tier/agent.yaml");
    let gateway = load("two-tier/gateway.yaml");
    let pipelines = pipelines(&agent, "agent.yaml");
    let traces: Vec<&Yaml> = pipelines
        .iter()
        .filter(|(name, _)| name == "traces" || name.starts_with("traces/"))
        .map(|(_, p)| p)
        .collect();
    assert!(!traces.is_empty(), "the agent has a traces pipeline");
    for p in traces {
        assert_eq!(
            strings(&p["exporters"]),
            ["loadbalancing"],
            "the agent's traces go to the gateways only, through the load balancer"
        );
    }
    let lb = &agent["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"].as_str(), Some("traceID"));
    assert!(
        !lb["protocol"]["otlp"].is_badvalue(),
        "loadbalancing speaks OTLP to the gateways"
    );
    let hostnames = strings(&lb["resolver"]["static"]["hostnames"]);
    assert!(hostnames.len() >= 2, "at least two gateways: {hostnames:?}");
    let gateway_grpc = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .expect("the gateway receives OTLP/gRPC");
    for host in &hostnames {
        assert_eq!(
            port(host),
            port(gateway_grpc),
            "{host}: the gateways' OTLP/gRPC port"
        );
    }
    // The agent takes what the engine sends: OTLP on the standard ports.
    let protocols = &agent["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"].as_str(), Some("0.0.0.0:4317"));
    assert_eq!(protocols["http"]["endpoint"].as_str(), Some("0.0.0.0:4318"));
    // Metrics: the agent takes them (else the engine's exports fail) and sends them on.
    let metrics = pipelines
        .iter()
        .find(|(name, _)| name == "metrics")
        .map(|(_, p)| p)
        .expect("the agent has a metrics pipeline");
    assert_eq!(strings(&metrics["receivers"]), ["otlp"]);
    assert!(!strings(&metrics["exporters"]).is_empty());
}

#[test]
fn gateway_writes_json_trace_files_and_to_jaeger() {
    let c = load("two-tier/gateway.yaml");
    let pipelines = pipelines(&c, "gateway.yaml");
    let exporters: Vec<String> = pipelines
        .iter()
        .filter(|(name, _)| name.starts_with("traces"))
        .flat_map(|(_, p)| strings(&p["exporters"]))
        .collect();
    let file = exporters
        .iter()
        .find(|e| *e == "file" || e.starts_with("file/"))
        .expect("a file exporter in a traces pipeline");
    let file = &c["exporters"][file.as_str()];
    assert_eq!(
        file["format"].as_str(),
        Some("json"),
        "what the report reads"
    );
    assert!(file["path"].as_str().is_some_and(|p| p.ends_with(".json")));
    // The report reads zstd; any other compression it would not.
    assert!(matches!(file["compression"].as_str(), None | Some("zstd")));
    assert!(
        file["rotation"]["max_megabytes"].as_i64().is_some(),
        "rotated"
    );
    let jaeger = exporters
        .iter()
        .find(|e| e.starts_with("otlp"))
        .expect("an OTLP exporter to Jaeger (or Tempo)");
    assert_eq!(
        c["exporters"][jaeger.as_str()]["endpoint"].as_str(),
        Some("jaeger:4317")
    );
}

#[test]
fn two_tier_compose_agrees_with_the_configs() {
    let d = load("two-tier/docker-compose.yaml");
    let agent = load("two-tier/agent.yaml");
    let gateway = load("two-tier/gateway.yaml");
    let services = &d["services"];
    // The agent publishes the engine's ports and reads agent.yaml.
    let a = &services["agent"];
    let ports = strings(&a["ports"]);
    for p in ["4317:4317", "4318:4318"] {
        assert!(ports.contains(&p.to_owned()), "agent publishes {p}");
    }
    let mounted = |s: &Yaml, file: &str| -> String {
        let volumes = strings(&s["volumes"]);
        let mount = volumes
            .iter()
            .find(|v| v.starts_with(&format!("./{file}:")))
            .unwrap_or_else(|| panic!("mounts ./{file}: {volumes:?}"));
        let inside = mount.split(':').nth(1).unwrap_or_default().to_owned();
        let command = strings(&s["command"]).join(" ");
        assert!(command.contains(&inside), "reads {inside}: {command}");
        inside
    };
    mounted(a, "agent.yaml");
    // Every gateway the load balancer names is a service running gateway.yaml, each with a
    // directory of its own for the trace file.
    let lb = &agent["exporters"]["loadbalancing"];
    let file_dir = gateway["exporters"]["file/traces"]["path"]
        .as_str()
        .and_then(|p| p.rsplit_once('/'))
        .map(|(dir, _)| dir.to_owned())
        .expect("the file exporter's directory");
    let mut dirs = Vec::new();
    for host in strings(&lb["resolver"]["static"]["hostnames"]) {
        let name = host.split(':').next().unwrap_or_default();
        let g = &services[name];
        assert!(!g.is_badvalue(), "a service {name} for the gateway {host}");
        mounted(g, "gateway.yaml");
        let data = strings(&g["volumes"])
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some(file_dir.as_str()))
            .unwrap_or_else(|| panic!("{name} mounts {file_dir}"));
        dirs.push(data.split(':').next().unwrap_or_default().to_owned());
        assert!(
            strings(&g["depends_on"]).contains(&"jaeger".to_owned()),
            "{name} starts after Jaeger"
        );
    }
    let distinct: std::collections::BTreeSet<_> = dirs.iter().collect();
    assert_eq!(
        distinct.len(),
        dirs.len(),
        "one directory per gateway: {dirs:?}"
    );
    // Jaeger is where the gateways send, with OTLP on.
    assert_eq!(
        services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"].as_str(),
        Some("true")
    );
    assert!(strings(&services["jaeger"]["ports"]).contains(&"16686:16686".to_owned()));
    // Metrics: the backend the agent names is a service with that port.
    let metrics_endpoint = agent["exporters"]["otlphttp/metrics"]["endpoint"]
        .as_str()
        .expect("the agent's metrics endpoint");
    let authority = metrics_endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, p) = authority.split_once(':').expect("host:port");
    let backend = &services[host];
    assert!(!backend.is_badvalue(), "a service {host}");
    assert!(
        strings(&backend["ports"]).contains(&format!("{p}:{p}")),
        "{host} publishes {p}"
    );
    assert!(
        strings(&backend["command"]).contains(&"--web.enable-otlp-receiver".to_owned()),
        "Prometheus takes OTLP"
    );
}

#[test]
fn two_tier_readme_names_the_files_and_limits() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/collector-config/two-tier/README.md"
    ))
    .expect("collector-config/two-tier/README.md");
    for needle in [
        "docker compose -f collector-config/two-tier/docker-compose.yaml up -d",
        "routing_key: traceID",
        "http://localhost:16686",
        "http://localhost:4317",
        "omni-metrics report",
        "Clock skew",
        "In-flight time across hosts",
        "Resolver changes move traces",
        "Tail sampling",
    ] {
        assert!(
            readme.contains(needle),
            "two-tier/README.md lacks {needle:?}"
        );
    }
}
