// Package train is the training stage's library: it provisions the data and
// model volumes, starts (or finds) the run of the pipeline version recorded
// on the pipeline branch, follows it, collects its metrics and model
// reference, writes the run record back to the training branch, calls the
// snapshot stage, evaluates the KPI gate and opens the promotion pull
// request into the deploy branch. Run is the entry point.
//
// As part of the train stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package train
