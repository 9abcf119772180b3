// Package tfserving is a small client for TensorFlow Serving's REST API
// (model status, metadata, predict), a parser of its Prometheus metrics and a
// writer of its model config text format.
//
// As part of the serving backend it imports only packages of that concern
// (agents/backends/serving/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package tfserving
