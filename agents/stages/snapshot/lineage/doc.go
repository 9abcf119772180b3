// Package lineage is the lineage record of one training run: which commit,
// configuration, pipeline version and component images produced which model
// version from which data snapshot. Records are JSON files in the training
// branch (records.LineageDir/<id>.json) and are attached to the snapshots.
//
// As part of the snapshot stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package lineage
