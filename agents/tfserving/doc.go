// Package tfserving is a small client for TensorFlow Serving's REST API
// (model status, metadata, predict), a parser of its Prometheus metrics and a
// writer of its model config text format.
package tfserving
