//! A schedule: every span, field, event and instant the test makes an engine produce, in
//! whole microseconds. The property test generates schedules; the edge-case tests write
//! them by hand. Both the driver (through the real layer) and the reference model read
//! them, and nothing else.

/// Microseconds since the test's origin (the manual clock starts at 0).
pub(crate) type Us = u64;

/// A closed interval of time `[start, end]`.
pub(crate) type Window = (Us, Us);

/// How a field reaches its span: not at all, at creation, recorded later with
/// `Span::record` (declared without a value at creation), or both (the later value wins).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Field<T> {
    #[default]
    Absent,
    Create(T),
    Late(Us, T),
    Twice(T, Us, T),
}

impl<T: Clone> Field<T> {
    /// The value given at creation, if any.
    pub(crate) fn at_creation(&self) -> Option<T> {
        match self {
            Field::Create(v) | Field::Twice(v, _, _) => Some(v.clone()),
            Field::Absent | Field::Late(..) => None,
        }
    }

    /// The value recorded later, and when.
    pub(crate) fn late(&self) -> Option<(Us, T)> {
        match self {
            Field::Late(at, v) | Field::Twice(_, at, v) => Some((*at, v.clone())),
            Field::Absent | Field::Create(_) => None,
        }
    }

    /// The value the span ends with (the last one given).
    pub(crate) fn value(&self) -> Option<T> {
        match self {
            Field::Absent => None,
            Field::Create(v) | Field::Late(_, v) | Field::Twice(_, _, v) => Some(v.clone()),
        }
    }
}

/// Names of the engine's own spans (not `omni.*`; "omnivore" starts like one).
pub(crate) const FOREIGN_NAMES: [&str; 3] = ["engine.step", "omnivore", "http.request"];

/// A span outside the convention, with a decoy `request_id`/`stage_id`/`units` field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Foreign {
    /// Index into [`FOREIGN_NAMES`].
    pub(crate) name: usize,
    pub(crate) window: Window,
}

/// An offline run: its requests are one scope.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Run {
    pub(crate) run_id: String,
    /// `Some(at)`: `run_id` is recorded at `at` (before any of its requests closes)
    /// rather than given at creation.
    pub(crate) run_id_late: Option<Us>,
    /// Opened under an engine span (same window).
    pub(crate) via_foreign: bool,
    pub(crate) window: Window,
    pub(crate) requests: Vec<Request>,
    pub(crate) foreign: Vec<Foreign>,
}

/// One `omni.request`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Request {
    pub(crate) request_id: String,
    /// `Some(at)`: `request_id` is recorded at `at` rather than given at creation.
    pub(crate) id_late: Option<Us>,
    pub(crate) window: Window,
    /// `ok`, `error` or `aborted`.
    pub(crate) status: Field<&'static str>,
    pub(crate) status_message: Field<String>,
    /// Opened under an engine span (same window) rather than directly under its parent.
    pub(crate) via_foreign: bool,
    /// Opened inside its parent (`Span::in_scope`, a contextual parent) rather than with
    /// an explicit `parent:`; so are its engine span and its children.
    pub(crate) contextual: bool,
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) transfers: Vec<Transfer>,
    /// Engine spans directly under the request.
    pub(crate) foreign: Vec<Foreign>,
}

/// Where an `omni.output` event sits: the stage span itself, one of its queue or
/// postprocess children (by index), or its engine child span.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Host {
    Stage,
    Queue(usize),
    Post(usize),
    Foreign,
}

/// One `omni.output` event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Output {
    pub(crate) at: Us,
    pub(crate) units: Option<u64>,
    pub(crate) host: Host,
    /// Emitted inside its host (`Span::in_scope`) rather than with an explicit `parent:`.
    pub(crate) contextual: bool,
}

/// One `omni.stage` span (a chunk of its stage when the stage id repeats in the request).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Chunk {
    pub(crate) stage_id: u64,
    /// `Some(at)`: `stage_id` is recorded at `at` rather than given at creation.
    pub(crate) stage_id_late: Option<Us>,
    pub(crate) window: Window,
    /// Opened under an engine span (same window) rather than directly under the request.
    pub(crate) via_foreign: bool,
    /// Opened inside its parent rather than with an explicit `parent:` (its children
    /// alternate, the first one inside it too).
    pub(crate) contextual: bool,
    pub(crate) stage_name: Field<&'static str>,
    pub(crate) batch_id: Field<u64>,
    pub(crate) batch_size: Field<u64>,
    pub(crate) num_tokens_in: Field<u64>,
    pub(crate) num_tokens_out: Field<u64>,
    pub(crate) audio_generated_frames: Field<u64>,
    pub(crate) audio_sample_rate: Field<u64>,
    pub(crate) image_num: Field<u64>,
    pub(crate) resolution: Field<&'static str>,
    /// Explicit `stage_gen_time_ms`, in µs.
    pub(crate) gen_us: Field<u64>,
    /// Explicit `postprocess_time_ms`, in µs.
    pub(crate) postprocess_us: Field<u64>,
    /// Explicit `time_to_first_output_ms`, in µs.
    pub(crate) first_output_us: Field<u64>,
    /// Explicit `inter_output_ms`, in µs.
    pub(crate) inter_output_us: Field<u64>,
    pub(crate) queues: Vec<Window>,
    pub(crate) postprocesses: Vec<Window>,
    /// An engine span under the stage.
    pub(crate) foreign_child: Option<Window>,
    pub(crate) outputs: Vec<Output>,
    /// Events that are not `omni.output` (a decoy `units` field), at these instants.
    pub(crate) decoys: Vec<Us>,
}

/// One `omni.transfer` span.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Transfer {
    pub(crate) from_stage: u64,
    pub(crate) to_stage: u64,
    /// `Some(at)`: `from_stage` and `to_stage` are recorded at `at`.
    pub(crate) edge_late: Option<Us>,
    pub(crate) window: Window,
    pub(crate) via_foreign: bool,
    /// As [`Chunk::contextual`].
    pub(crate) contextual: bool,
    pub(crate) size_bytes: Field<u64>,
    /// Explicit `tx_time_ms`, in µs.
    pub(crate) tx_us: Field<u64>,
    /// Explicit `rx_decode_time_ms`, in µs.
    pub(crate) rx_us: Field<u64>,
    /// Explicit `in_flight_time_ms`, in µs.
    pub(crate) in_flight_us: Field<u64>,
    pub(crate) tx: Vec<Window>,
    pub(crate) rx: Vec<Window>,
}

/// Everything one test case does.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) runs: Vec<Run>,
    /// Requests with no run: each its own scope.
    pub(crate) online: Vec<Request>,
    /// Engine spans with no parent.
    pub(crate) foreign: Vec<Foreign>,
}

// ---------------------------------------------------------------------------------------
// Hand-written schedules: small constructors for the edge-case tests.

/// Milliseconds to µs (whole µs only).
pub(crate) fn ms(v: f64) -> Us {
    (v * 1000.0).round() as Us
}

impl Request {
    /// A request `[start, end]` ms with no children, status absent (ok).
    pub(crate) fn new(id: &str, start_ms: f64, end_ms: f64) -> Self {
        Self {
            request_id: id.to_owned(),
            id_late: None,
            window: (ms(start_ms), ms(end_ms)),
            status: Field::Absent,
            status_message: Field::Absent,
            via_foreign: false,
            contextual: false,
            chunks: Vec::new(),
            transfers: Vec::new(),
            foreign: Vec::new(),
        }
    }
}

impl Chunk {
    /// A stage span `[start, end]` ms with no fields but its id.
    pub(crate) fn new(stage_id: u64, start_ms: f64, end_ms: f64) -> Self {
        Self {
            stage_id,
            window: (ms(start_ms), ms(end_ms)),
            ..Self::default()
        }
    }

    /// With `omni.output` events (no units) at these ms.
    pub(crate) fn outputs(mut self, at_ms: &[f64]) -> Self {
        self.outputs.extend(at_ms.iter().map(|t| Output {
            at: ms(*t),
            units: None,
            host: Host::Stage,
            contextual: false,
        }));
        self
    }
}

impl Run {
    /// A run `[start, end]` ms of these requests.
    pub(crate) fn new(id: &str, start_ms: f64, end_ms: f64, requests: Vec<Request>) -> Self {
        Self {
            run_id: id.to_owned(),
            run_id_late: None,
            via_foreign: false,
            window: (ms(start_ms), ms(end_ms)),
            requests,
            foreign: Vec::new(),
        }
    }
}

impl Transfer {
    /// A transfer `[start, end]` ms on the edge `from->to`, with no children.
    pub(crate) fn new(from: u64, to: u64, start_ms: f64, end_ms: f64) -> Self {
        Self {
            from_stage: from,
            to_stage: to,
            window: (ms(start_ms), ms(end_ms)),
            ..Self::default()
        }
    }
}

/// `[a, b]` ms as a window.
pub(crate) fn win(a: f64, b: f64) -> Window {
    (ms(a), ms(b))
}
