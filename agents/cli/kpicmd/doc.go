// Package kpicmd is `branchml kpi check`: the promotion gate of
// agents/stages/train/kpi outside a run, on a metrics directory (a model
// version directory, or a run's metrics.json and predictions.csv), for a
// data scientist's laptop and for tests. The decision is the one the train
// stage makes: same KPIs, same statistics, same seed.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package kpicmd
