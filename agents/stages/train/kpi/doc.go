// Package kpi is the promotion gate. It decides whether a trained model may
// be proposed for deployment, from two kinds of KPI of branchml.yaml
// (training.kpis):
//
//   - KPIs with confidence, measured on a held-out split
//     (training.gate.split) that the pipeline used for neither training,
//     early stopping nor selection. The pipeline writes one row per example
//     of that split (ParsePredictions); the gate computes AUC, log loss,
//     accuracy or Brier score of the model, of the baselines (columns of the
//     same file, and the built-in prior), and of the champion (the model
//     serving on the deploy branch, FindChampion) on the examples both
//     predicted, and a circular block-bootstrap confidence interval of each
//     KPI's improvement with a fixed seed. A KPI passes only when the lower
//     bound of the interval exceeds its margin (Decide).
//   - Point checks (with op) of metrics.json values (Evaluate): sanity
//     floors without confidence.
//
// It renders the gate as Markdown for the promotion pull request and as
// text for summaries: the metrics side by side with intervals, and one row
// per KPI with value, reference, improvement, interval, margin, verdict.
//
// As part of the train stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package kpi
