// Package tfserving is a shared fake of TensorFlow Serving's REST API for
// tests: model status (GET /v1/models/{name}[/versions/{v}|/labels/{l}]),
// metadata, predict and the Prometheus endpoint
// (/monitoring/prometheus/metrics with :tensorflow:serving:request_count and
// :tensorflow:serving:request_latency), following TF Serving's REST API
// documentation. Faults are injected by wrapping the handler (Fail, Delay,
// Malformed). cmd/fake-tfserving runs it as a process with
// tensorflow_model_server's flags.
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package tfserving
