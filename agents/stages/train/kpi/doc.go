// Package kpi is the promotion gate: it checks the KPIs of branchml.yaml
// (training.kpis) against the metrics.json a training run wrote, and renders
// the metrics table of the promotion pull request.
//
// As part of the train stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package kpi
