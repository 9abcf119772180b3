// Package s3 is an S3-compatible object store for tests: gofakes3
// (github.com/johannesboyne/gofakes3, MIT) with its in-memory backend,
// served on 127.0.0.1, requiring requests signed with one access key ID,
// every request recorded. Tests put objects where KFP's launcher would
// upload a task's outputs (the pipeline root's bucket and key).
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package s3
