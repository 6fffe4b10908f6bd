"""Traces shaped as vLLM-Omni's own, made by the real OpenTelemetry Python SDK.

Run by tests/cli_report/vllm_omni.rs with the venv it installs (requirements in
vllm_omni_requirements.txt). Drives the SDK as vLLM-Omni's orchestrator does
(vllm_omni/tracing.py; see ../shared/anchors/vllm-omni-today.md): a root span
`omni.pipeline` per request with `omni.request.id`; one `omni.stage` child per stage with
`omni.stage.id`, `omni.stage.type` and `omni.replica.id`; the event
`omni.stage.first_output` at a stage's first output; on failure `error.type` and status
ERROR on the request and its unfinished stages; at the end `omni.request.outcome` on the
request and on every stage still open, which is ended with it. The provider is built as
vLLM-Omni builds it: service name `vllm-omni`, a BatchSpanProcessor, the OTLP/gRPC exporter.

Every time is given explicitly (`start_time`, `end_time`, the event's `timestamp`, in ns), so
the truth is exact. The requests' actions are played in time order across requests, as
concurrent requests interleave. What the report must find is written as JSON (`--truth`).

    python vllm_omni_traces.py --endpoint http://127.0.0.1:4317 --truth truth.json
"""

import argparse
import json
import random
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

MS = 1_000_000


class PipelineTrace:
    """One request as vLLM-Omni's orchestrator traces it, every call at an explicit time."""

    def __init__(self, tracer, request_id, at):
        self.tracer = tracer
        self.span = tracer.start_span(
            "omni.pipeline", attributes={"omni.request.id": request_id}, start_time=at
        )
        self.context = trace.set_span_in_context(self.span)
        self.stages = {}
        self.outputs = set()
        self.finished = set()
        self.error_type = None
        # The truth: what each stage did, when.
        self.truth = {"request_id": request_id, "start": at, "stages": {}}

    def start_stage(self, stage_id, replica_id, stage_type, at):
        if stage_id in self.stages:
            return
        self.stages[stage_id] = self.tracer.start_span(
            "omni.stage",
            context=self.context,
            attributes={
                "omni.stage.id": stage_id,
                "omni.stage.type": stage_type,
                "omni.replica.id": replica_id,
            },
            start_time=at,
        )
        self.truth["stages"][stage_id] = {
            "stage_id": stage_id,
            "stage_name": stage_type,
            "replica_id": replica_id,
            "start": at,
            "first_output": None,
        }

    def output(self, stage_id, at):
        if stage_id in self.outputs or stage_id not in self.stages:
            return
        self.outputs.add(stage_id)
        self.stages[stage_id].add_event("omni.stage.first_output", timestamp=at)
        self.truth["stages"][stage_id]["first_output"] = at

    def finish_stage(self, stage_id, at):
        if stage_id in self.finished or stage_id not in self.stages:
            return
        self.finished.add(stage_id)
        self.stages[stage_id].end(end_time=at)
        self.truth["stages"][stage_id]["end"] = at

    def fail(self, error_type):
        self.error_type = error_type
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(trace.StatusCode.ERROR)
        for stage_id, span in self.stages.items():
            if stage_id not in self.finished:
                span.set_attribute("error.type", error_type)
                span.set_status(trace.StatusCode.ERROR)

    def end(self, outcome, at):
        if outcome == "error" and self.error_type is None:
            self.fail("stage_error")
        said = "error" if self.error_type else outcome
        self.span.set_attribute("omni.request.outcome", said)
        for stage_id, span in self.stages.items():
            if stage_id not in self.finished:
                span.set_attribute("omni.request.outcome", said)
                self.finish_stage(stage_id, at)
        self.span.end(end_time=at)
        self.truth["end"] = at
        self.truth["outcome"] = said
        self.truth["error_type"] = self.error_type


def plan(i, t0, rng):
    """Request i's actions from t0, in ns: (time, method, args). Three stages (a thinker LLM
    on two replicas, a talker LLM, an audio stage on three), each starting on its
    predecessor's first output; some requests fail, some are aborted, one has no audio
    output, some are text only (one stage)."""

    def ms(lo, hi):
        return rng.randint(int(lo * MS), int(hi * MS))

    s0 = t0 + ms(0.2, 2)
    f0 = s0 + ms(5, 40)
    e0 = f0 + ms(10, 80)
    s1 = f0 + ms(1, 5)
    f1 = s1 + ms(5, 30)
    e1 = max(e0, f1) + ms(5, 50)
    s2 = f1 + ms(1, 5)
    f2 = s2 + ms(3, 20)
    e2 = max(e1, f2) + ms(5, 40)
    end = e2 + ms(0.1, 2)
    actions = [
        (s0, "start_stage", (0, i % 2, "llm")),
        (f0, "output", (0,)),
        (e0, "finish_stage", (0,)),
    ]
    text_only = i % 13 == 12
    if text_only:
        return actions + [(e0 + ms(0.1, 1), "end", ("success",))]
    actions += [
        (s1, "start_stage", (1, 0, "llm")),
        (f1, "output", (1,)),
        (e1, "finish_stage", (1,)),
        (s2, "start_stage", (2, i % 3, "audio")),
        (f2, "output", (2,)),
        (e2, "finish_stage", (2,)),
    ]
    if i == 1:
        # The audio stage ran and produced nothing.
        actions = [a for a in actions if a[1:] != ("output", (2,))]
    if i % 7 == 3:
        # Stage 1 fails: the request ends there, its open stages with it.
        at = s1 + ms(2, 10)
        error = ["OutOfMemoryError", "ValueError"][i % 2]
        end = at + ms(0.1, 1)
        actions = [a for a in actions if a[0] < at]
        return actions + [(at, "fail", (error,)), (end, "end", ("error",))]
    if i % 11 == 5:
        # The client went away during the audio stage.
        end = s2 + ms(1, 3)
        actions = [a for a in actions if a[0] < end]
        return actions + [(end, "end", ("aborted",))]
    return actions + [(end, "end", ("success",))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--seed", type=int, default=25)
    args = parser.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "vllm-omni"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint)))
    tracer = provider.get_tracer("vllm_omni.tracing")

    rng = random.Random(args.seed)
    base = time.time_ns() - 60_000 * MS
    plans = []
    for i in range(args.requests):
        t0 = base + i * 37 * MS + rng.randint(0, MS)
        plans.append((t0, f"chatcmpl-{i:03d}", plan(i, t0, rng)))

    # Every request's actions in time order, across requests.
    traces = {}
    steps = [(t0, rid, "open", ()) for t0, rid, _ in plans]
    for _, rid, actions in plans:
        steps += [(at, rid, method, args) for at, method, args in actions]
    steps.sort(key=lambda s: (s[0], s[1]))
    for at, rid, method, margs in steps:
        if method == "open":
            traces[rid] = PipelineTrace(tracer, rid, at)
        elif method == "fail":
            traces[rid].fail(*margs)
        elif method == "end":
            traces[rid].end(*margs, at)
        else:
            getattr(traces[rid], method)(*margs, at)
    provider.shutdown()

    requests = []
    for _, rid, _ in plans:
        t = traces[rid].truth
        stages = []
        for s in sorted(t["stages"].values(), key=lambda s: s["stage_id"]):
            first = s["first_output"]
            stages.append(
                {
                    "stage_id": s["stage_id"],
                    "stage_name": s["stage_name"],
                    "replica_id": s["replica_id"],
                    "start_ns": s["start"],
                    "end_ns": s["end"],
                    "wall_time_ms": (s["end"] - s["start"]) / MS,
                    "time_to_first_output_ms": None
                    if first is None
                    else (first - s["start"]) / MS,
                }
            )
        last = stages[-1]
        first = t["stages"][last["stage_id"]]["first_output"]
        requests.append(
            {
                "request_id": rid,
                "outcome": t["outcome"],
                "error_type": t["error_type"],
                "start_ns": t["start"],
                "end_ns": t["end"],
                "e2e_total_ms": (t["end"] - t["start"]) / MS,
                "time_to_first_output_ms": None if first is None else (first - t["start"]) / MS,
                "stages": stages,
            }
        )
    spans = sum(1 + len(r["stages"]) for r in requests)
    with open(args.truth, "w") as f:
        json.dump({"spans": spans, "requests": requests}, f, indent=1)


if __name__ == "__main__":
    main()
