// Package snapshot is the snapshot stage: after a training run it snapshots
// the data and model volumes, links them to the commit, configuration,
// pipeline version, images and run in a lineage record, attaches the record
// to the snapshots and writes it back to the training branch. It also
// prunes old snapshots (retention) without touching those a deployed
// model's lineage references.
//
// As part of the snapshot stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command, except agents/stages/train,
// whose Snapshotter hook it implements.
package snapshot
